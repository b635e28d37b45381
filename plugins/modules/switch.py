#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: switch an app's services to another release without a gap."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch
short_description: Switch an app's service containers to another release (blue/green, handoff, recreate)
description:
  - Starts the containers of O(release) beside the old ones, waits until each runs, passes its
    health check when it has one (run by the module, by exec, when the engine has not run it
    yet) and answers its readiness path, points the proxy's upstreams
    at them with one checked, graceful nginx reload, then stops the old containers (SIGTERM,
    their stop timeout, SIGKILL) - those not behind the proxy first (a polling bot hands over to
    the new one in standby), the ones behind it once O(proxy.drain_seconds) have passed since
    the reload.
  - Per service strategy C(recreate), the old container is stopped before the new one starts
    (not zero-downtime).
  - If a new container cannot start, never becomes ready, or the proxy refuses the new
    configuration, the new containers are removed, stopped C(recreate) containers are started
    again, the proxy keeps its previous upstreams, and the task fails with the reason; the old
    release keeps serving.
  - When services are behind the proxy and the proxy container does not run, or when O(image) is
    not on the server, nothing is changed and the task fails with RV(proxy_missing=true) or
    RV(image_missing=true), so that the playbook provisions the proxy or builds the image, and
    switches again.
  - The whole switch runs in one process on the server, talking to the Docker engine over its
    socket (docs/zero-downtime.md). That process leaves the module's session (C(setsid)) and
    ignores hang-ups, so a control node that dies mid-switch (SIGKILL of C(ansible-playbook) and
    its process group, a dropped SSH connection) leaves it to finish; the module waits for its
    answer (C(plugins/module_utils/detach.py)). The logic is in C(plugins/module_utils/switch.py).
  - The containers are named C(<app>_<service>_<release>) and labelled C(fs.app), C(fs.role=service),
    C(fs.service), C(fs.release), C(fs.strategy) and C(fs.config) (a hash of their settings; a
    container of the same name with other settings is replaced, one with the same settings that
    runs is kept).
version_added: "0.2.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  app:
    description: The app's name (label C(fs.app), container name prefix).
    type: str
    required: true
  release:
    description: The release to switch to.
    type: str
    required: true
  image:
    description: Image of the new containers (C(repository:tag)), on the server (never pulled).
    type: str
    required: true
  network:
    description: The app's Docker network; each container joins it with its service name as alias.
    type: str
    required: true
  services:
    description: The app's services, with every key filled in (the app role's C(app_services_resolved)).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Service name.
        type: str
        required: true
      command:
        description: Command (argv) run in the image; empty runs the image's own.
        type: list
        elements: str
        default: []
      mode:
        description: How the service receives its work (only used to default O(services[].strategy)).
        type: str
        choices: [webhook, polling, http]
        default: polling
      strategy:
        description:
          - How the service is replaced.
          - Default C(blue_green) for O(services[].mode=webhook) and C(http); for C(polling),
            C(handoff) with O(services[].single_poller), else C(recreate) (the same defaults as the
            role's C(app_services); C(plugins/module_utils/services.py)).
        type: str
        choices: [blue_green, handoff, recreate]
      single_poller:
        description: The app guarantees one poller at a time (only used to default O(services[].strategy)).
        type: bool
        default: false
      proxied:
        description: Whether the proxy routes to it.
        type: bool
        default: false
      port:
        description: HTTP port inside the container (readiness path, proxy upstream).
        type: int
        default: 8080
      readiness:
        description:
          - How the switch knows the new container can take over, besides running and passing its
            health check when it has one - C(http) (O(services[].readiness_path) answers 200),
            C(healthcheck) (it must have a health check), C(tcp) (O(services[].port) accepts
            connections), C(running) (it runs O(services[].ready_after) seconds without a restart).
          - C(auto) is C(http) when O(services[].readiness_path) is set, else C(healthcheck) when the
            container has a health check, else C(tcp) for a service behind the proxy, else C(running).
        type: str
        choices: [auto, http, healthcheck, tcp, running]
        default: auto
      readiness_path:
        description: GET path that answers 200 once it is ready (readiness C(http)).
        type: str
        default: ""
      ready_after:
        description: Seconds a container must run without a restart (readiness C(running)).
        type: float
        default: 5
      stop_timeout:
        description: Seconds between SIGTERM and SIGKILL (default O(stop_timeout)).
        type: int
      env:
        description: Environment (not secret; shown in the container's settings).
        type: dict
        default: {}
  secret_env:
    description:
      - Secret environment per service (a dict of dicts, service name to variables), added to
        O(services[].env). Never returned or logged.
    type: dict
    default: {}
  stop_timeout:
    description: Default seconds between SIGTERM and SIGKILL for an old container.
    type: int
    default: 20
  restart_policy:
    description: Restart policy of the new containers.
    type: str
    choices: ["no", on-failure, always, unless-stopped]
    default: unless-stopped
  healthcheck:
    description:
      - Health check of the new containers (keys C(test), C(interval), C(timeout), C(retries),
        C(start_period); durations like C(2s)); empty uses the image's C(HEALTHCHECK).
    type: dict
    default: {}
  log_driver:
    description: Log driver of the new containers.
    type: str
    default: json-file
  log_options:
    description: Log options of the new containers.
    type: dict
    default: {}
  ready_timeout:
    description: Seconds the new containers have to run and pass their health check.
    type: float
    default: 120
  probe_retries:
    description: Attempts (one a second) at each readiness path once the containers pass their health check.
    type: int
    default: 30
  record_root:
    description:
      - The app's root directory on the server (its release store). When set, the switch says on
        the server which release serves, as part of the switch itself; a switch whose control node
        dies still leaves the record equal to what serves.
      - While the switch runs, C(<record_root>/.switch.json) names the releases, the process and
        the stage reached (removed at the end; left behind, it tells of an interrupted switch).
      - The moment the new containers take the traffic (proxy reloaded, handoff done), before the old
        containers behind the proxy are stopped, the C(current) link is pointed at O(release) (one
        atomic rename), its record gets C(activated_at) and O(record), and O(replaced)'s record gets
        O(replaced_record).
    type: path
  record:
    description:
      - Keys merged into the record (C(RELEASE.json)) of O(release) when it takes the traffic.
      - When the switch started containers, the record also gets C(switch) - RV(guarantees) and RV(gaps).
    type: dict
    default: {}
  replaced:
    description: The release being replaced, whose record gets O(replaced_record).
    type: str
    default: ""
  replaced_record:
    description: Keys merged into the record of O(replaced) when O(release) takes the traffic.
    type: dict
    default: {}
  proxy:
    description: The proxy in front of the services with O(services[].proxied=true).
    type: dict
    suboptions:
      container:
        description: Name of the proxy container.
        type: str
        required: true
      directory:
        description: Directory of the upstream files C(fs_upstream_<service>.conf) in it.
        type: str
        default: /etc/nginx
      conf:
        description: nginx configuration file that includes them.
        type: str
        default: /etc/nginx/fs_nginx.conf
      drain_seconds:
        description: Seconds the old containers behind the proxy keep running after the reload.
        type: float
        default: 2
extends_documentation_fragment:
  - fieldservice.deploy.common.docker
attributes:
  check_mode:
    support: full
    description: Lists the old and new containers and reports whether the switch would change anything.
  diff_mode:
    support: none
    description: >-
      RV(old) and RV(new) name the containers replaced and started; there is no file to show before
      and after.
  idempotent:
    support: full
    description: With the release's containers running and the proxy pointing at them, nothing changes.
"""

EXAMPLES = r"""
- name: Switch the services to the new release
  fieldservice.deploy.switch:
    app: field_service
    release: 3f2a9c1d0b7e
    image: field_service:3f2a9c1d0b7e
    network: field_service_net
    services:
      - {name: admin_bot, command: [python, -m, field_service.bots.admin_bot.main],
         strategy: blue_green, proxied: true, port: 8080, readiness_path: /ready,
         env: {LOG_LEVEL: INFO}}
      - {name: master_bot, command: [python, -m, field_service.bots.master_bot.main],
         strategy: handoff, proxied: false, port: 8080, readiness_path: /ready}
      - {name: reports_bot, command: [python, -m, reports.bot], mode: polling,
         strategy: recreate, readiness: running, ready_after: 5}
    secret_env:
      admin_bot: {BOT_TOKEN: "{{ vault_admin_bot_token }}"}
    proxy:
      container: field_service_proxy
      drain_seconds: 2
"""

RETURN = r"""
old:
  description: The old containers (of other releases) found at the start.
  returned: always
  type: list
  elements: str
new:
  description: The containers of O(release).
  returned: always
  type: list
  elements: str
created:
  description:
    - The containers created and started.
  returned: success
  type: list
  elements: str
kept:
  description: Containers of O(release) that already ran with the same settings.
  returned: success
  type: list
  elements: str
stopped:
  description: The old containers stopped and removed.
  returned: success
  type: list
  elements: str
switched:
  description: Whether the proxy was reloaded with new upstreams.
  returned: success
  type: bool
addresses:
  description: Each service's new container's address in the app network.
  returned: success
  type: dict
readiness:
  description: How each service's new container was judged ready (C(http GET /ready), C(tcp port 8080)...).
  returned: success
  type: dict
  sample: {admin_bot: "http GET /ready", master_bot: "running 5 s"}
guarantees:
  description: What each service got from the switch, in words.
  returned: success
  type: dict
  sample: {admin_bot: blue/green behind the proxy, master_bot: "recreate: down for 2.3 s"}
gaps:
  description:
    - Seconds each C(recreate) service was down, from the SIGTERM to its old container until the new
      one was ready (readiness C(running) - until it started); null for the others.
  returned: success
  type: dict
  sample: {admin_bot: null, master_bot: 2.31}
killed:
  description:
    - A line per old container that did not stop within its stop timeout and was killed (SIGKILL, exit
      137); what it had taken and not finished may be lost.
  returned: success
  type: list
  elements: str
summary:
  description: A line per service - its name, what it got and how it was judged ready.
  returned: success
  type: list
  elements: str
  sample: ["admin_bot blue/green behind the proxy (ready: http GET /ready)"]
recorded:
  description: The new release took the traffic and the record on the server says so (O(record_root)).
  returned: success
  type: bool
timings:
  description:
    - Seconds since the start at the end of each phase (recreate_stopped, started, ready, probed,
      switched, handed_over, old_stopped).
  returned: success
  type: dict
stage:
  description: Where a failed switch stopped (image, start, ready, probe, proxy, record, docker).
  returned: failure
  type: str
proxy_missing:
  description: The proxy container does not run; nothing was changed.
  returned: failure
  type: bool
image_missing:
  description: The image O(image) is not on the server; nothing was changed.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store
from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.detach import DetachedFailure, run_detached
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient, DockerError
from ansible_collections.fieldservice.deploy.plugins.module_utils.services import (
    DEFAULT_MODE,
    MODES,
    READINESS,
    STRATEGIES,
)
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import (
    ProxySettings,
    Service,
    Switcher,
    SwitchError,
    scrub,
)

SERVICE_SPEC = {
    "name": {"type": "str", "required": True},
    "command": {"type": "list", "elements": "str", "default": []},
    "mode": {"type": "str", "choices": list(MODES), "default": DEFAULT_MODE},
    "strategy": {"type": "str", "choices": list(STRATEGIES)},
    "proxied": {"type": "bool", "default": False},
    "port": {"type": "int", "default": 8080},
    "single_poller": {"type": "bool", "default": False},
    "readiness": {"type": "str", "choices": list(READINESS), "default": "auto"},
    "readiness_path": {"type": "str", "default": ""},
    "ready_after": {"type": "float", "default": 5},
    "stop_timeout": {"type": "int"},
    "env": {"type": "dict", "default": {}},
}
PROXY_SPEC = {
    "container": {"type": "str", "required": True},
    "directory": {"type": "str", "default": "/etc/nginx"},
    "conf": {"type": "str", "default": "/etc/nginx/fs_nginx.conf"},
    "drain_seconds": {"type": "float", "default": 2},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "app": {"type": "str", "required": True},
            "release": {"type": "str", "required": True},
            "image": {"type": "str", "required": True},
            "network": {"type": "str", "required": True},
            "services": {"type": "list", "elements": "dict", "required": True, "options": SERVICE_SPEC},
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
            "stop_timeout": {"type": "int", "default": 20},
            "restart_policy": {"type": "str", "default": "unless-stopped",
                               "choices": ["no", "on-failure", "always", "unless-stopped"]},
            "healthcheck": {"type": "dict", "default": {}},
            "log_driver": {"type": "str", "default": "json-file"},
            "log_options": {"type": "dict", "default": {}},
            "ready_timeout": {"type": "float", "default": 120},
            "probe_retries": {"type": "int", "default": 30},
            "proxy": {"type": "dict", "options": PROXY_SPEC},
            "record_root": {"type": "path"},
            "record": {"type": "dict", "default": {}},
            "replaced": {"type": "str", "default": ""},
            "replaced_record": {"type": "dict", "default": {}},
            **docker_spec(),
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        services = [Service.from_dict(s, p["stop_timeout"]) for s in p["services"]]
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    proxy = ProxySettings(**p["proxy"]) if p["proxy"] else None
    root = p["record_root"]
    hooks = {}
    journal = None
    if root and not module.check_mode:
        if not store.release_present(root, p["release"]):
            module.fail_json(msg=f"release {p['release']} is not under {store.releases_dir(root)}",
                             stage="record", proxy_missing=False, image_missing=False)

        def on_serving() -> None:
            try:
                record = dict(p["record"])
                if switcher.result["created"]:  # what this switch gave each service
                    record["switch"] = {"guarantees": switcher.result["guarantees"],
                                        "gaps": switcher.result["gaps"]}
                store.record_serving(root, p["release"], record, p["replaced"] or None,
                                     p["replaced_record"])
            except (store.ReleaseStoreError, OSError) as exc:
                raise SwitchError(f"Release {p['release']} serves, but the record on the server could not "
                                  f"be written: {exc}", "record") from exc

        hooks["on_serving"] = on_serving
    switcher = Switcher(
        DockerClient(docker_host=p["docker_host"]), p["app"], p["release"], p["image"], p["network"],
        services, secret_env=p["secret_env"], proxy=proxy, restart_policy=p["restart_policy"],
        healthcheck=p["healthcheck"], log_driver=p["log_driver"], log_options=p["log_options"],
        ready_timeout=p["ready_timeout"], probe_retries=p["probe_retries"],
        default_stop_timeout=p["stop_timeout"], **hooks,
    )

    def work() -> dict:
        # in the detached process: the journal names it, not the module's
        if root and not module.check_mode:
            nonlocal journal
            journal = store.SwitchJournal(root, p["release"], [p["replaced"]] if p["replaced"] else [])
            switcher.on_stage = journal.stage
            journal.begin()
        try:
            result = switcher.run(check_mode=module.check_mode)
        except SwitchError:
            if journal:  # given up cleanly: the previous release serves as before
                journal.end()
            raise
        if journal:
            journal.end()
        return result

    def on_error(exc: BaseException) -> dict:
        so_far = {k: v for k, v in switcher.result.items() if k != "changed"}
        out = {"proxy_missing": False, "image_missing": False, "changed": switcher.result["changed"],
               **so_far}
        if isinstance(exc, SwitchError):
            out.update(msg=str(exc), stage=exc.stage, proxy_missing=exc.proxy_missing,
                       image_missing=exc.image_missing)
        elif isinstance(exc, DockerError):
            out.update(msg=scrub(f"Docker error during the switch: {exc}"), stage="docker")
        else:
            out.update(msg=scrub(f"Error during the switch: {exc}"), stage="docker")
        return out

    if module.check_mode:
        try:
            module.exit_json(**work())
        except (SwitchError, DockerError, OSError) as exc:
            module.fail_json(**on_error(exc))
    # Detached (plugins/module_utils/detach.py): a control node that dies
    # mid-switch leaves it to finish on the server and record what serves.
    try:
        result = run_detached(work, on_error)
    except DetachedFailure as exc:
        if exc.payload is None:
            module.fail_json(msg=f"The switch to {p['release']} stopped: {exc}. Run playbooks/health.yml "
                                 "to see which release serves.", stage="docker", proxy_missing=False,
                             image_missing=False, changed=True)
        module.fail_json(**exc.payload)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
