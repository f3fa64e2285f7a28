"""Cluster DNS: a CoreDNS-like resolver for netkube (see docs/dns.md)."""
