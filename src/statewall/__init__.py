"""statewall: a stateful firewall engine that behaves like Cisco ASA and Linux netfilter."""

__version__ = "0.1.0"
