"""Source addresses as the ban engine counts them.

One canonical text per source: an IPv4 address as dotted quad ("::ffff:192.0.2.7" is
192.0.2.7), an IPv6 address as its /prefix network ("2001:db8:1:2::/64"), since one IPv6
host owns a whole /64 and would otherwise walk around any ban.
"""

import ipaddress

from .errors import Invalid

# Tenants may not trust networks wider than these: 0.0.0.0/0 would switch bans off.
MIN_TENANT_PREFIX = {4: 16, 6: 32}


def parse_address(text):
    """An ip_address, with IPv4-mapped IPv6 unwrapped and zone IDs refused; None if bad."""
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if address.version == 6:
        if address.scope_id:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def source_of(text, ipv6_prefix=64, *, field="address"):
    """The canonical source text of an address (or of an IPv6 network given as a CIDR)."""
    if isinstance(text, str) and "/" in text:
        network = parse_network(text, field=field)
        if network.version == 4:
            if network.prefixlen != 32:
                raise Invalid(field, "an IPv4 source is one address")
            return str(network.network_address)
        if network.prefixlen != ipv6_prefix:
            raise Invalid(field, f"an IPv6 source is a /{ipv6_prefix} network")
        return str(network)
    address = parse_address(text)
    if address is None:
        raise Invalid(field, "not an IP address")
    if address.version == 4:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{ipv6_prefix}", strict=False))


def source_network(source):
    """The network a canonical source covers."""
    return ipaddress.ip_network(source if "/" in source else f"{source}/32", strict=False)


def parse_network(text, *, field="cidr"):
    if not isinstance(text, str) or len(text) > 64:
        raise Invalid(field, "not a network in CIDR notation")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise Invalid(field, "not a network in CIDR notation") from None
    if network.version == 6 and network.network_address.ipv4_mapped is not None \
            and network.prefixlen >= 96:
        network = ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}", strict=False)
    return network


def overlaps(source, networks):
    """True when the source and any of the networks share addresses, in either direction:
    the source inside a network, or a network inside the source. An IPv6 source is a whole
    prefix, so a narrower range in it (an edge's own /128, a trusted /120) protects it too;
    the alternative, banning the /64 the range lies in, would ban the range itself."""
    net = source_network(source)
    return any(net.version == n.version and (net.subnet_of(n) or n.subnet_of(net))
               for n in networks)
