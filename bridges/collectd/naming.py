"""Graphite paths for collectd identifiers, exactly as collectd's write_graphite makes them.

write_graphite (collectd 5.12, utils_format_graphite.c) builds

    <Prefix><host><Postfix>.<plugin>[-<plugin_instance>].<type>[-<type_instance>][.<ds>]

- every part (host, plugin, instances, type) is escaped: `.` (unless PreserveSeparator),
  white space and control characters become EscapeCharacter (default `_`);
- SeparateInstances puts a `.` instead of the `-` between a name and its instance;
- the data-source name is appended only for types with more than one data source, or always
  with AlwaysAppendDS;
- DropDuplicateFields drops the type when it equals the plugin (`memory.memory-used` ->
  `memory.used`... exactly: the type part becomes the type instance alone), and the type part
  entirely when it equals the plugin part.
- ReverseHost reverses the dot-separated parts of the host before escaping
  (`node3.cluster1.example.com` -> `com_example_cluster1_node3`).
- UseTags writes tagged series instead (collectd 5.12, seen on the wire):
  `<Prefix><plugin>.<type>[.<ds>]<Postfix>;host=<host>;plugin=<plugin>[;plugin_instance=<pi>]
  ;type=<type>[;type_instance=<ti>][;ds_name=<ds>]`, dots kept in every part, the other
  escapes as above; DropDuplicateFields leaves out the type (name and tag) when it equals the
  plugin; SeparateInstances and PreserveSeparator do not apply; the Postfix may add tags
  (`;env=prod`).

monbus additionally escapes what its own line syntax forbids in a path or a tag value (`;`,
a leading `~` of a tag value, and Unicode white space and control characters that C's
isspace/iscntrl do not see in UTF-8 bytes), so a collectd name can never produce an invalid
line.  With Prefix "collectd." the first two
components are `collectd.<host>`: the bus topic.
"""
from __future__ import annotations

import re

from monbus.core.line import LineError, topic_of

# Per part (gr_copy_escape_part): C's isspace() and iscntrl() in the "C" locale (0x00-0x20,
# 0x7f) and '.' unless PreserveSeparator.  Then the whole name (escape_graphite_string):
# GRAPHITE_FORBIDDEN = ` \t"\\:!/()\n\r`.  Both replace with the same character, so one pass
# per part does both.  Plus what the monbus line syntax forbids in a path: ';', the C1
# controls and the Unicode line separators (C sees UTF-8 bytes >= 0x80 as ordinary).
_FORBIDDEN = r'"\\:!/()'
_ESCAPE_WITH_DOT = re.compile(rf"[.;{_FORBIDDEN}\x00-\x20\x7f-\x9f\u2028\u2029]")
_ESCAPE_NO_DOT = re.compile(rf"[;{_FORBIDDEN}\x00-\x20\x7f-\x9f\u2028\u2029]")
# a UseTags Postfix may hold tags: its `;` and `=` stay
_ESCAPE_TAG_POSTFIX = re.compile(rf"[{_FORBIDDEN}\x00-\x20\x7f-\x9f\u2028\u2029]")


class NamingError(ValueError):
    """An option value that cannot give valid paths."""


class GraphiteNaming:
    """Turns collectd identifiers into monbus series names, the write_graphite way."""

    def __init__(self, prefix: str = "collectd.", postfix: str = "", escape_character: str = "_",
                 separate_instances: bool = False, always_append_ds: bool = False,
                 preserve_separator: bool = False, drop_duplicate_fields: bool = False,
                 reverse_host: bool = False, use_tags: bool = False):
        if len(escape_character) != 1 or _ESCAPE_WITH_DOT.match(escape_character):
            raise NamingError(f"EscapeCharacter must be one character that may appear in a "
                              f"path (not '.', ';' or white space): {escape_character!r}")
        # the whole-name pass of write_graphite escapes the forbidden characters of the
        # prefix and postfix too (not their dots)
        self.prefix = _ESCAPE_NO_DOT.sub(escape_character, prefix)
        self.postfix = (_ESCAPE_TAG_POSTFIX if use_tags else _ESCAPE_NO_DOT).sub(
            escape_character, postfix)
        self.escape_character = escape_character
        self.separate_instances = separate_instances
        self.always_append_ds = always_append_ds
        self.preserve_separator = preserve_separator
        self.drop_duplicate_fields = drop_duplicate_fields
        self.reverse_host = reverse_host
        self.use_tags = use_tags
        self._cache: dict[tuple, tuple] = {}
        # check the fixed parts now, so a bad --prefix is a start-up error, not a runtime one
        try:
            if use_tags:
                topic_of(f"{self.prefix}p.t{self.postfix};host=h")
            else:
                topic_of(f"{self.prefix}h{self.postfix}.p.t")
        except LineError as e:
            raise NamingError(f"prefix {prefix!r} / postfix {postfix!r} give invalid paths: "
                              f"{e.problem}") from None

    def escape(self, part: str, preserve_separator: bool | None = None) -> str:
        """One identifier part, escaped as write_graphite's gr_copy_escape_part does."""
        keep = self.preserve_separator if preserve_separator is None else preserve_separator
        return (_ESCAPE_NO_DOT if keep else _ESCAPE_WITH_DOT).sub(self.escape_character, part)

    def _base(self, host, plugin, plugin_instance, type_, type_instance, keep):
        e = self.escape
        sep = "." if self.separate_instances else "-"
        n_plugin = e(plugin, keep)
        n_type = e(type_, keep)
        tmp_plugin = f"{n_plugin}{sep}{e(plugin_instance, keep)}" if plugin_instance else n_plugin
        if type_instance:
            if self.drop_duplicate_fields and n_plugin == n_type:
                tmp_type = e(type_instance, keep)
            else:
                tmp_type = f"{n_type}{sep}{e(type_instance, keep)}"
        else:
            tmp_type = n_type
        head = f"{self.prefix}{e(self._host(host), keep)}{self.postfix}"
        return head, tmp_plugin, tmp_type

    def _host(self, host: str) -> str:
        """The host as written: its dot-separated parts reversed with ReverseHost."""
        return ".".join(reversed(host.split("."))) if self.reverse_host else host

    def _tag(self, value: str) -> str:
        """A tag value: escaped as a UseTags name part, and no leading `~` (monbus tags)."""
        v = _ESCAPE_NO_DOT.sub(self.escape_character, value)
        return self.escape_character + v[1:] if v.startswith("~") else v

    def _tagged(self, key, keep) -> tuple[str, ...]:
        """UseTags series (see the module doc); `keep` False escapes the dots of the name
        (never needed by collectd, whose names may then have empty components)."""
        host, plugin, plugin_instance, type_, type_instance, ds_names = key
        e = self.escape
        dup = self.drop_duplicate_fields and e(plugin, True) == e(type_, True)
        name = self.prefix + e(plugin, keep) + ("" if dup else "." + e(type_, keep))
        t = self._tag
        tags = f";host={t(self._host(host))};plugin={t(plugin)}"
        if plugin_instance:
            tags += f";plugin_instance={t(plugin_instance)}"
        if not dup:
            tags += f";type={t(type_)}"
        if type_instance:
            tags += f";type_instance={t(type_instance)}"
        if ds_names is None or (len(ds_names) == 1 and not self.always_append_ds):
            return (f"{name}{self.postfix}{tags}",)
        return tuple(f"{name}.{e(ds, keep)}{self.postfix}{tags};ds_name={t(ds)}"
                     for ds in ds_names)

    def _names(self, key, keep) -> tuple[str, ...]:
        if self.use_tags:
            return self._tagged(key, keep)
        host, plugin, plugin_instance, type_, type_instance, ds_names = key
        if ds_names is not None:
            ds_names = tuple(self.escape(ds, True) for ds in ds_names)
        head, tmp_plugin, tmp_type = self._base(host, plugin, plugin_instance, type_,
                                                type_instance, keep)
        if ds_names is None or (len(ds_names) == 1 and not self.always_append_ds):
            return (f"{head}.{tmp_plugin}.{tmp_type}",)
        if self.drop_duplicate_fields and tmp_plugin == tmp_type:
            return tuple(f"{head}.{tmp_plugin}.{ds}" for ds in ds_names)
        return tuple(f"{head}.{tmp_plugin}.{tmp_type}.{ds}" for ds in ds_names)

    def series(self, host: str, plugin: str, plugin_instance: str, type_: str,
               type_instance: str, ds_names: tuple) -> tuple[str, ...]:
        """The series name of each data source (one name if the DS is not appended)."""
        key = (host, plugin, plugin_instance, type_, type_instance, ds_names)
        got = self._cache.get(key)
        if got is not None:
            return got
        names = self._names(key, self.preserve_separator or self.use_tags)
        try:
            for n in names:
                topic_of(n)
        except LineError:
            # PreserveSeparator can leave empty components (`a..b`, a leading dot): escape
            # the dots of this identifier after all rather than emit an invalid line
            names = self._names(key, False)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = names
        return names

    def notification_series(self, host: str, plugin: str, plugin_instance: str, type_: str,
                            type_instance: str) -> str:
        """The series of a notification: the value's path (without DS) plus `.notification`;
        parts the notification does not name are left out."""
        e = self.escape
        if self.use_tags:
            t = self._tag
            parts = [e(x, False) for x in (plugin, type_) if x] + ["notification"]
            tags = f";host={t(self._host(host or 'unknown'))}"
            for k, v in (("plugin", plugin), ("plugin_instance", plugin_instance),
                         ("type", type_), ("type_instance", type_instance)):
                if v:
                    tags += f";{k}={t(v)}"
            return f"{self.prefix}{'.'.join(parts)}{self.postfix}{tags}"
        sep = "." if self.separate_instances else "-"
        parts = [f"{self.prefix}{e(self._host(host or 'unknown'))}{self.postfix}"]
        if plugin:
            parts.append(f"{e(plugin)}{sep}{e(plugin_instance)}" if plugin_instance else e(plugin))
        if type_:
            parts.append(f"{e(type_)}{sep}{e(type_instance)}" if type_instance else e(type_))
        elif type_instance:
            parts.append(e(type_instance))
        parts.append("notification")
        return ".".join(parts)
