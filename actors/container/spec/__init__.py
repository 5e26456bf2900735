"""The OCI runtime spec of a container, as dockerd 20.10 would have runc run it.

Pure logic: a Docker Engine API create request (``Config`` + ``HostConfig``)
and the image's config go in, a ``config.json`` dict for runc 1.1 comes out.
The image's ``/etc/passwd`` and ``/etc/group`` are read by the caller
(``pouch.actors.containerd.rootfs``); what the machine offers is asked of a
``host.HostView`` (this machine unless a test gives another).

- ``merge``: Docker's create-time merge of the request over the image
  (entrypoint, cmd, env, workdir, user) and the environment dockerd adds
  (PATH, HOSTNAME, TERM);
- ``user``: user resolution as runc's libcontainer/user does it, `--group-add`;
- ``oci``: the spec itself: the default capabilities, rlimits, mounts, sysctls and
  the init (`--init`: Debian's tini at /sbin/docker-init);
- ``namespaces``: `--network`, `--ipc`, `--pid`, `--uts`;
- ``resources``: the cgroup limits (memory, CPU, pids, block IO);
- ``devices``: `--device`, `--device-cgroup-rule`, a privileged container's devices;
- ``security``: `--security-opt`, the masked and read-only paths;
- ``seccomp``: the syscall filter (pouch's default profile, Docker-format profiles);
- ``mounts``: `-v`, `--mount` (bind, volume, tmpfs), the image's and Config's
  VOLUMEs and `--volumes-from`, planned as dockerd plans them (the volumes
  themselves are the volume actor's; ``pouch.actors.container.mounts`` asks it);
- ``defaults``: HostConfig as dockerd records it (what inspect shows);
- ``host``: what the kernel and /dev offer.

A value the container would not get (a control the kernel lacks, a mode not
supported) is refused, naming the field and why, never dropped.

Not here yet: AppArmor/SELinux labels (the `z`/`Z` of a
`-v` mode is taken and shown, never applied), volume drivers other than `local`,
realtime CPU limits, and a cgroup namespace of the container's own. Joining
another container's IPC or PID namespace is prepared here (entries without a
path) and completed at each start by ``pouch.actors.container.joins``.
"""
