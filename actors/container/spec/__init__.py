"""The OCI runtime spec of a container, as dockerd 20.10 would have runc run it.

Pure logic: a Docker Engine API create request (``Config`` + ``HostConfig``)
and the image's config go in, a ``config.json`` dict for runc 1.1 comes out.
The image's ``/etc/passwd`` and ``/etc/group`` are read by the caller
(``pouch.actors.containerd.rootfs``).

- ``merge``: Docker's create-time merge of the request over the image
  (entrypoint, cmd, env, workdir, user) and the environment dockerd adds
  (PATH, HOSTNAME, TERM);
- ``user``: user resolution as runc's libcontainer/user does it;
- ``oci``: the spec itself: the default capabilities, rlimits, mounts, masked
  and read-only paths, device rules, cgroup limits and namespace-scoped sysctls.

Not here yet: seccomp (Docker's default profile is future work, so containers
run without a syscall filter), AppArmor/SELinux labels, HostConfig.Devices,
the host's devices for privileged containers, GroupAdd, Binds and volumes,
blkio limits, and the init process (HostConfig.Init is ignored).
"""
