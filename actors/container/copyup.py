"""The image's files copied into a new volume, as dockerd's copy-up does it.

A volume made for a container (`-v name:/data`, an anonymous volume of the image's
VOLUME) starts with what the image has at that place, unless `nocopy`: every file,
folder, symlink and device node with its owner, mode, times and extended attributes;
hard links stay links. Only an empty volume gets them, and the volume's own folder
takes the owner and mode of the image's folder (dockerd's copyOwnership), so a
container running as a user can write where its image let it.

The source is read from a root descriptor (`pouch.actors.container.fsview`): the path
is resolved inside the root, and every step is opened with O_NOFOLLOW, so nothing in
the image reaches outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat

from pouch.actors.container import fsview

CHUNK = 1 << 20


def copy_up(root_fd: int, destination: str, volume: str) -> bool:
    """Copy what the root has at `destination` into the folder `volume`. False when
    nothing was copied: the image has no folder there, or the volume is not empty."""
    try:
        parts = fsview.resolve(fsview.fd_lookup(root_fd), destination)
        source = fsview.open_dir(root_fd, parts)
    except OSError:
        return False  # missing, or not a folder: nothing to copy
    try:
        if os.listdir(volume):
            return False
        _copy_dir(source, volume, {})
        _own(volume, os.fstat(source), _xattrs_of(source, None))
    finally:
        os.close(source)
    return True


def _xattrs_of(dir_fd: int, name: str | None) -> dict[str, bytes]:
    """The extended attributes of `name` in the folder `dir_fd` (the folder itself when
    None), the symlink itself if it is one; none where the file system keeps none."""
    path = f"/proc/self/fd/{dir_fd}" + (f"/{name}" if name else "")
    found: dict[str, bytes] = {}
    try:
        for key in os.listxattr(path, follow_symlinks=False):
            with contextlib.suppress(OSError):
                found[key] = os.getxattr(path, key, follow_symlinks=False)
    except OSError:
        pass
    return found


def _copy_dir(src_fd: int, dst: str, links: dict[tuple[int, int], str]) -> None:
    for entry in os.scandir(src_fd):
        st = entry.stat(follow_symlinks=False)
        target = os.path.join(dst, entry.name)
        xattrs = _xattrs_of(src_fd, entry.name)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, 0o700)
            child = os.open(entry.name, fsview.DIR_FLAGS, dir_fd=src_fd)
            try:
                _copy_dir(child, target, links)
            finally:
                os.close(child)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], target)
                continue
            _copy_file(src_fd, entry.name, target)
            links[key] = target
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.name, dir_fd=src_fd), target)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(target, mode, st.st_rdev)
        else:
            continue  # a socket: nothing to copy
        _own(target, st, xattrs)


def _copy_file(src_fd: int, name: str, target: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    with os.fdopen(fd, "rb") as src, open(target, "xb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _own(path: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
    """Owner first (a chown drops the setuid bits), then mode, attributes and times."""
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    link = stat.S_ISLNK(st.st_mode)
    if not link:
        os.chmod(path, stat.S_IMODE(st.st_mode))
    for key, value in xattrs.items():
        try:
            os.setxattr(path, key, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                raise
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
