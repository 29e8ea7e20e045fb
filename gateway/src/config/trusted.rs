//! `trusted_ips`: the address blocks whose forwarding headers are believed.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedIps {
    nets: Vec<IpNet>,
}

impl TrustedIps {
    /// Parses Kong's comma-separated list: `10.0.0.0/8, 192.168.1.1, ::/0`, or `unix`
    /// (ignored: no unix sockets here).
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if item == "unix" {
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("`{item}` is not an IP address or CIDR block")),
                },
            };
            nets.push(net.trunc());
        }
        Ok(Self { nets })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn cidrs_and_single_addresses() {
        let t = TrustedIps::parse(&list("10.0.0.0/8, 192.168.1.1,::1,unix")).unwrap();
        assert!(t.contains("10.2.3.4".parse().unwrap()));
        assert!(t.contains("192.168.1.1".parse().unwrap()));
        assert!(!t.contains("192.168.1.2".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(TrustedIps::parse(&list("")).unwrap().is_empty());
        let e = TrustedIps::parse(&list("10.0.0.0/33")).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
    }
}
