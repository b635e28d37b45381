# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation shared by the collection's modules."""

from __future__ import annotations


class ModuleDocFragment:
    # fieldservice.deploy.common (the base fragment): nothing of its own.
    DOCUMENTATION = r"""
options: {}
"""

    # fieldservice.deploy.common.docker: the modules that talk to the Docker
    # engine themselves (plugins/module_utils/docker_api.py).
    DOCKER = r"""
options:
  docker_host:
    description:
      - The Docker engine's API, as C(unix:///path/to/socket) (the default, the local engine) or
        C(tcp://host:port) (no TLS).
    type: str
    default: unix:///var/run/docker.sock
"""

    # fieldservice.deploy.common.database: the app's PostgreSQL when it runs in
    # a container on the same engine (app_db_managed).
    DATABASE = r"""
options:
  database:
    description:
      - The app's PostgreSQL container, reached with C(psql) through C(docker exec).
      - Omit it (null) when the database is not in a container of this engine.
    type: dict
    suboptions:
      container:
        description: Name of the database container.
        type: str
        required: true
      user:
        description: Database user C(psql) connects as.
        type: str
        required: true
      name:
        description: Database name.
        type: str
        required: true
"""

    # fieldservice.deploy.common.read_only: the attributes of a module that
    # only reads and reports.
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
"""
