"""The corpus of real ASA configurations: the Batfish project's ASA fixtures (Apache-2.0, licence beside
them) and configurations written from Cisco's configuration-guide examples for 8.2, 8.4 and 9.x.

Each loads with no error unless it carries a deliberate one, which is then reported at its line and
column; each prints back as a running-config that reads back to the same model, with names, remarks and
object-groups as written; and every line is accounted for: a fate (modelled, no effect on traffic through
the box, not modelled) or not configuration at all (comments, the console's own lines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from statewall.dialects.asa import ConfigError, parse, render
from statewall.dialects.asa.lexer import lines
from statewall.dialects.asa.parser import _EXEC_WORDS
from test_asa_dialect import same_model

CORPUS = Path(__file__).parent / "corpus"
BATFISH = sorted((CORPUS / "batfish").glob("*/*"))
CISCO = sorted((CORPUS / "cisco").glob("*"))
ALL = [p for p in BATFISH + CISCO if p.name not in ("README.md", "LICENSE")]

# Fixtures written with a deliberate error, and what statewall says about each (a real ASA refuses the
# same lines: a name that was never defined, a value out of the command's range).
FAILS: dict[str, list[str]] = {
    "asa-filters": ["36:14: access-group refers to unknown access-list 'FILTER_UNDEF'"],
    "asa-gh-6042": ["7:48: unknown object 'X'"],
    "asa-logging-bad-port": ["6:30: invalid syslog port '500' (1025..65535)"],
    "asa-nested-icmp-type-object-group": [
        "17:14: invalid object-group type 'group' (expected network, service, protocol, icmp-type, user or "
        "security)",
        "28:15: object-group 'UNDEFINED_GROUP_MIXED' is not a defined icmp-type object-group",
        "30:14: invalid object-group type 'group' (expected network, service, protocol, icmp-type, user or "
        "security)",
    ],
    "asa-nested-protocol-object-group": [
        "17:14: invalid object-group type 'group' (expected network, service, protocol, icmp-type, user or "
        "security)",
        "28:15: object-group 'UNDEFINED_GROUP_MIXED' is not a defined protocol object-group",
        "30:14: invalid object-group type 'group' (expected network, service, protocol, icmp-type, user or "
        "security)",
    ],
    "asa-static-gh-5729": [
        "7:7: route refers to unknown interface 'management'",
        "8:7: route refers to unknown interface 'iad-xxx'",
        "9:7: route refers to unknown interface 'iad-xxx'",
        "10:16: address '10.1.3.4' has bits outside its netmask",
    ],
    "asa_dns_bad_ranges": [
        "7:10: dns timeout must be 1..30",
        "8:10: dns retries must be 0..10",
        "9:21: dns poll-timer must be 1..65535",
        "10:29: dns expire-entry-timer must be 1..65535",
    ],
}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_each_configuration_loads_or_fails_with_its_located_errors(path: Path):
    text = path.read_text()
    if path.name in FAILS:
        with pytest.raises(ConfigError) as info:
            parse(text, path.name)
        assert [str(e) for e in info.value.errors] == [f"{path.name}:{e}" for e in FAILS[path.name]]
        return
    policy = parse(text, path.name)
    # Every line is accounted for: a fate, or no configuration at all.
    commands = {
        line.number for line in lines(text) if line.words[0] not in _EXEC_WORDS and line.words != ["enable"]
    }
    assert {o.line for o, _ in policy.fates} <= commands
    refused = {w.origin.line for w in policy.warnings if "console refused" in w.message}
    assert commands - refused == {o.line for o, _ in policy.fates}
    # Each line that is not modelled is named by a warning at its line.
    warned = {w.origin.line for w in policy.warnings if w.gap}
    not_modelled = {o.line for o, fate in policy.fates if fate == "not-modelled"}
    unknown = {w.origin.line for w in policy.warnings if w.message.startswith("unknown command")}
    sub_lines = not_modelled - warned - unknown
    # The rest are sub-lines of a block whose first line carries the warning.
    assert all(any(w < line for w in warned | unknown) for line in sub_lines)


@pytest.mark.parametrize("path", [p for p in ALL if p.name not in FAILS], ids=_id)
def test_each_configuration_prints_back_to_the_same_model(path: Path):
    policy = parse(path.read_text(), path.name)
    text = render(policy)
    again = parse(text, "again.cfg")
    same_model(policy, again)
    assert render(again) == text


def test_names_remarks_and_object_groups_print_back_as_written():
    text = render(parse((CORPUS / "cisco" / "asa82-guide.cfg").read_text()))
    for line in (
        "name 10.1.1.10 mailserver description the mail relay",
        "access-list outside_in remark web and mail published in the DMZ",
        "object-group service web-ports tcp",
        " port-object eq www",
        # With names on, an address that has a name prints as the name, as the ASA prints it.
        "access-list outside_in extended permit tcp any host web-public object-group web-ports",
        " network-object host mailserver",
        "access-list outside_in extended permit object-group mail-services any host 198.51.100.11",
        "access-list inside_in extended permit ip object-group all-internal any",
        "access-list inside_in extended permit object-group tunnels any host 203.0.113.9",
        "time-range business-hours",
    ):
        assert line in text.splitlines(), line


def _fates() -> dict[str, int]:
    counts = {"modelled": 0, "no-effect": 0, "not-modelled": 0}
    for path in BATFISH:
        if path.name in FAILS or path.name in ("README.md", "LICENSE"):
            continue
        for _, fate in parse(path.read_text(), path.name).fates:
            counts[fate] += 1
    return counts


def test_the_share_of_the_batfish_corpus_the_readme_states():
    # README.md, "Real configurations": keep the two in step (statewall check --json gives the counts).
    loaded = [p for p in BATFISH if p.name not in FAILS and p.name not in ("README.md", "LICENSE")]
    assert len(loaded) == 35
    assert _fates() == {"modelled": 164, "no-effect": 101, "not-modelled": 116}
