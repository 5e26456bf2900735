"""The local volume driver's rules: names, options, how they are mounted, filters."""

from __future__ import annotations

import pytest

from pouch.actors.volume import rules
from pouch.actors.volume.rules import (
    MS_BIND,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    Facts,
    check_driver,
    check_name,
    check_options,
    list_filters,
    listed,
    mount_plan,
    prune_filters,
    pruned,
    stale,
)
from pouch.proto.envelope import PouchError


def refusal(fn, *args) -> PouchError:
    with pytest.raises(PouchError) as raised:
        fn(*args)
    return raised.value


@pytest.mark.parametrize("name", ["ab", "data", "my_vol.1", "A-b_c.d", "0x", "a" * 255])
def test_names_dockerd_accepts(name: str):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "..", "../etc", ".hidden", "-dash", "_under",
                                  "with space", "new\nline", "ü-nicode", "a/../../x",
                                  "/abs", "a:b"])
def test_names_that_would_leave_the_volumes_folder_or_are_not_dockerds(name: str):
    error = refusal(check_name, name)
    assert error.code == "invalid"
    assert "includes invalid characters for a local volume name" in error.message
    assert '"[a-zA-Z0-9][a-zA-Z0-9_.-]"' in error.message


def test_a_one_letter_name_is_too_short_and_a_long_one_too_long():
    assert "too short" in refusal(check_name, "a").message
    assert "too short" in refusal(check_name, ".").message
    assert "too long" in refusal(check_name, "a" * 256).message


def test_only_the_local_driver():
    assert check_driver("") == check_driver("local") == "local"
    error = refusal(check_driver, "rexray")
    assert error.code == "not_found"
    assert error.message == 'error looking up volume plugin rexray: plugin "rexray" not found'


# -- options -----------------------------------------------------------------------


def test_no_options_is_a_plain_volume():
    assert check_options(None) == {} and check_options({}) == {}


def test_option_keys_are_type_device_and_o():
    assert refusal(check_options, {"size": "1m"}).message == 'invalid option key: "size"'
    assert refusal(check_options, {"type": "tmpfs"}).message == \
        'missing required option: "device"'
    assert refusal(check_options, {"device": "/dev/sdz"}).message == \
        'missing required option: "type"'
    assert refusal(check_options, {"o": "size=1m", "device": "tmpfs"}).message == \
        'missing required option: "type"'


def test_tmpfs_with_size_and_mode():
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,mode=1777,uid=1000,nosuid"}
    assert check_options(options) == options
    plan = mount_plan(options)
    assert (plan.device, plan.fstype, plan.data) == ("tmpfs", "tmpfs",
                                                    "size=64m,mode=1777,uid=1000")
    assert plan.flags == MS_NOSUID and not plan.bind and not plan.remount_readonly


@pytest.mark.parametrize("o", ["size=big", "mode=999", "size", "colour=red", "uid=-1"])
def test_tmpfs_options_tmpfs_would_refuse(o: str):
    error = refusal(check_options, {"type": "tmpfs", "device": "tmpfs", "o": o})
    assert error.message == f'invalid tmpfs option: "{o}"'


def test_a_bind_of_a_host_folder():
    plan = mount_plan({"type": "none", "device": "/srv/data", "o": "bind"})
    assert (plan.device, plan.fstype, plan.flags) == ("/srv/data", None, MS_BIND)
    readonly = mount_plan({"type": "none", "device": "/srv/data", "o": "rbind,ro,noexec,rprivate"})
    assert readonly.flags == MS_BIND | MS_REC | MS_RDONLY | MS_NOEXEC
    assert readonly.remount_readonly and readonly.propagation == MS_PRIVATE | MS_REC
    assert mount_plan({"type": "bind", "device": "/srv", "o": ""}).bind


def test_a_bind_needs_an_absolute_source_and_takes_no_data():
    relative = refusal(check_options, {"type": "none", "device": "srv/data", "o": "bind"})
    assert relative.message == ('invalid mount device: bind source "srv/data" is not an '
                                "absolute path")
    assert "invalid mount options for a bind" in refusal(
        check_options, {"type": "none", "device": "/srv", "o": "bind,size=1m"}).message


def test_flags_later_win_and_remount_is_not_ours_to_give():
    assert mount_plan({"type": "ext4", "device": "/dev/x", "o": "ro,rw"}).flags == 0
    assert "remount" in refusal(check_options, {"type": "ext4", "device": "/dev/x",
                                                "o": "remount"}).message


# -- filters -----------------------------------------------------------------------

DB = Facts("db-data", "local", {"tier": "db", "env": "prod"}, in_use=True)
WEB = Facts("web-cache", "local", {"tier": "web"}, in_use=False)
BARE = Facts("scratch", "local", {}, in_use=False)


def names(filters: dict[str, list[str]]) -> list[str]:
    checked = list_filters(filters)
    return [f.name for f in (DB, WEB, BARE) if listed(f, checked)]


def test_list_filters():
    assert names({}) == ["db-data", "web-cache", "scratch"]
    assert names({"name": ["data"]}) == ["db-data"]
    assert names({"name": ["^s", "cache$"]}) == ["web-cache", "scratch"]
    assert names({"label": ["tier"]}) == ["db-data", "web-cache"]
    assert names({"label": ["tier=db", "env=prod"]}) == ["db-data"]
    assert names({"label": ["tier=db", "env=test"]}) == []
    assert names({"dangling": ["true"]}) == ["web-cache", "scratch"]
    assert names({"dangling": ["0"]}) == ["db-data"]
    assert names({"driver": ["local"], "label": ["tier=web"]}) == ["web-cache"]
    assert names({"driver": ["nfs"]}) == []


def test_list_filters_refused():
    assert refusal(list_filters, {"until": ["1h"]}).message == "invalid filter 'until'"
    assert refusal(list_filters, {"dangling": ["yes"]}).message == \
        "invalid filter 'dangling=yes'"


def test_prune_filters_take_label_and_label_not():
    def chosen(filters: dict[str, list[str]]) -> list[str]:
        checked = prune_filters(filters)
        return [f.name for f in (DB, WEB, BARE) if pruned(f, checked)]

    assert chosen({}) == ["web-cache", "scratch"]  # never one in use
    assert chosen({"label": ["tier"]}) == ["web-cache"]
    assert chosen({"label!": ["tier"]}) == ["scratch"]
    assert chosen({"label!": ["tier=web"]}) == ["scratch"]
    assert refusal(prune_filters, {"until": ["24h"]}).message == "invalid filter 'until'"
    assert refusal(prune_filters, {"dangling": ["true"]}).code == "invalid"


def test_the_tables_agree():
    assert set(rules.OPTION_KEYS) == set(rules._REQUIRES)


def test_references_of_containers_gone_for_a_while_are_stale():
    since = {"gone-long": 0.0, "gone-just-now": 950.0, "here": 0.0}
    assert stale(since, {"here"}, now=1000.0, grace=120.0) == {"gone-long"}
    assert stale(since, {"here", "gone-long", "gone-just-now"}, now=1000.0) == set()
