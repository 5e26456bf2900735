"""The volume actor: dockerd's local volume driver and the volumes' reference counts.

- ``rules``: what a name, the local driver's options and the list and prune filters
  may be (pure, unit-tested);
- ``store``: the volumes on disk, ``<home>/volumes/<name>/{_data,volume.json}``,
  each change written atomically before it is answered;
- ``mounts``: mounting a volume with options (tmpfs, a bind of a host folder, ...)
  at its ``_data`` while containers use it (the mount table: ``pouch.actors.mountpoints``);
- ``actor``: the service, its contract, events and the plugin hook.
"""
