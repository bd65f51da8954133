"""Given packet-tracer phases, expect the ASA's layouts: text, XML and JSON.

Fixtures: [PT] Cisco ASA command reference, packet-tracer (text blocks ``Phase:`` ... ``Additional
Information:`` and the ``Result:`` block with ``Action:`` and ``Drop-reason:``); [PT-XML] the XML form as
real ASAs answer ``packet-tracer ... xml`` (``<Phase><id>1</id><type>ROUTE-LOOKUP</type><subtype>Resolve
Egress Interface</subtype><result>ALLOW</result><config></config><extra>found next-hop 192.0.2.1 using
egress ifc  management</extra></Phase>`` ... ``<result><input-interface>`` ... ``<action>``
``<drop-reason>``), kept as test data by a public automation project.
"""

from __future__ import annotations

import json

from statewall.logfmt.tracer import TracePhase, TraceResult, format_json, format_text, format_xml

ROUTE = TracePhase(
    "ROUTE-LOOKUP", "Resolve Egress Interface", info=["found next-hop 192.0.2.1 using egress ifc  management"]
)
IMPLICIT = TracePhase("ACCESS-LIST", "", allowed=False, config=["Implicit Rule"])
DROPPED = TraceResult(
    "outside",
    "management",
    False,
    "acl-drop",
    "Flow is denied by configured rule",
    notes=["denied by the implicit deny at the end of access-list OUTSIDE_IN"],
)


def test_text_blocks_and_result():
    text = format_text([ROUTE, IMPLICIT], DROPPED)
    assert text.split("\n\n")[0] == (
        "Phase: 1\nType: ROUTE-LOOKUP\nSubtype: Resolve Egress Interface\nResult: ALLOW\nConfig:\n"
        "Additional Information:\nfound next-hop 192.0.2.1 using egress ifc  management"
    )
    assert (
        "Phase: 2\nType: ACCESS-LIST\nSubtype: \nResult: DROP\nConfig:\nImplicit Rule\n"
        "Additional Information:\n" in text
    )
    assert text.endswith(
        "Result:\ninput-interface: outside\ninput-status: up\ninput-line-status: up\n"
        "output-interface: management\noutput-status: up\noutput-line-status: up\nAction: drop\n"
        "Drop-reason: (acl-drop) Flow is denied by configured rule\n\n"
        "statewall: denied by the implicit deny at the end of access-list OUTSIDE_IN\n"
    )


def test_xml_in_the_asa_schema_without_statewall_notes():
    xml = format_xml([ROUTE, IMPLICIT], DROPPED)
    assert xml.startswith(
        "<Phase>\n<id>1</id>\n<type>ROUTE-LOOKUP</type>\n<subtype>Resolve Egress Interface</subtype>\n"
        "<result>ALLOW</result>\n<config></config>\n"
        "<extra>found next-hop 192.0.2.1 using egress ifc  management</extra>\n</Phase>\n"
    )
    assert "<config>Implicit Rule</config>" in xml
    assert xml.endswith(
        "<action>drop</action>\n<drop-reason>(acl-drop) Flow is denied by configured rule</drop-reason>\n"
        "</result>\n"
    )
    assert "statewall" not in xml


def test_json_has_phases_result_and_statewall_apart():
    data = json.loads(format_json([ROUTE, IMPLICIT], DROPPED))
    assert [p["type"] for p in data["phases"]] == ["ROUTE-LOOKUP", "ACCESS-LIST"]
    assert data["result"]["action"] == "drop" and data["result"]["drop_reason"]["keyword"] == "acl-drop"
    assert data["statewall"] == DROPPED.notes
