# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fs_backup: server-side PostgreSQL backups for the field-service deploy.

Python standard library only (3.8 or newer): the backup role installs this
package and its entry script side by side on the server, one folder per
version (``<backup_install_dir>/releases/<id>/fs-backup`` and ``.../fs_backup/``,
``<backup_install_dir>/current`` the link to the one in use)
and runs it with the system python3, from the deploy playbook (the pre-deploy
backup), from the backup playbooks (backup now, restore, verify, list,
cleanup) and from cron (scheduled backups, the weekly verify). It is the ONE
code that performs backups and rotation: the ``backup_rotate`` Ansible module
only drives its ``rotate`` action. Runs with umask 077: every file it creates
is 0600, every folder 0700. ``fs-backup --help`` (see ``cli``) has the usage
and the exit codes.

Layout (one module per part of the work, one per command):

  cli            argparse, logging, main(): the command line
  execute        Stage, run_pipeline, run_stream: processes chained by pipes
  signals        SIGTERM/SIGINT/SIGHUP as an exception, only while armed
  lock           BackupLock (one flock for every backup of the server) and
                 the clean-up of what interrupted runs left
  checksum       the ``<name>.sha256`` sidecars (sha256sum format)
  status         the JSON status file (last_success, last_failure, ...)
  files          small file helpers (atomic writes, fsync, modes)
  postgresql     the pg_dump stage, psql, the load stage, scratch databases
  compression    gzip (pigz) / zstd stages, a backup's kind from its name
  encryption     age: recipients (public keys only), identities, stages
  pipelines      the dump pipeline and the read-back pipeline
  names          backup names: rendered, checked, asked for by a person
  rotation       THE rotation rules (which backups a folder keeps)
  cloud          rclone: upload, list, delete, fetch
  monitoring     the healthchecks-style ping
  configuration  the JSON configuration the role writes
  actions/       one module per command (dump, run, verify, check, restore,
                 locate, list, rotate, cloud_rotate, verify_checksum,
                 check_config)

Encryption and rotation
-----------------------
The pipeline is a list of ``Stage``s (see ``pipelines.build_stages``): age
encryption to public keys is one more Stage after the compressor (``.age``
is added to the name), and the run fails closed when it is asked for and the
key or the tool is missing. After a successful scheduled backup, while the
lock is still held, the folder is rotated by the rules of ``rotation``; the
``rotate`` action applies the same functions on demand (cleanup_backups.yml,
the backup_rotate module).
"""

PROG = "fs_backup"
