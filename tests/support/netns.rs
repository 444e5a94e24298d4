//! Worker hosts with addresses of their own on this machine: a bridge in
//! the test's network namespace and, per host, a network namespace joined
//! to it by a veth pair. A host is cut off by taking its link down, and
//! brought back by taking it up. Everything is removed on drop, also when
//! the test fails. Made with `ip` (iproute2).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// A bridge and its hosts.
#[derive(Debug)]
pub struct Net {
    bridge: String,
    /// The hosts, in order.
    pub hosts: Vec<Host>,
    /// The bridge's own address: where the hosts reach services of the
    /// test (PostgreSQL).
    pub gateway: Ipv4Addr,
}

/// One host: a network namespace.
#[derive(Debug)]
pub struct Host {
    /// `ip netns` name.
    pub name: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// The veth end on the bridge (taken down to cut the host off).
    link: String,
}

impl Host {
    /// The namespace file, for `setns`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A bridge on `10.(200 + k).N.0/24` and `hosts` hosts; names and the
    /// subnet are derived from this process's id, so runs do not collide.
    pub fn create(hosts: usize) -> Result<Net, String> {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let subnet = [10u8, 200 + (pid / 250 % 50) as u8, (pid % 250) as u8 + 1];
        let gateway = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1);
        let mut net = Net {
            bridge: format!("skbr{tag}"),
            hosts: Vec::new(),
            gateway,
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..hosts {
            let host = Host {
                name: format!("skiff-{tag}-h{i}"),
                address: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 11 + i as u8),
                link: format!("skv{tag}h{i}"),
            };
            ip(&["netns", "add", &host.name])?;
            net.hosts.push(host);
            let h = net.hosts.last().expect("just pushed");
            ip(&[
                "link", "add", &h.link, "type", "veth", "peer", "name", "eth0", "netns", &h.name,
            ])?;
            ip(&["link", "set", &h.link, "master", &net.bridge, "up"])?;
            let addr = format!("{}/24", h.address);
            ip(&["-n", &h.name, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &h.name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &h.name, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Cut host `i` off from the bridge (and so from the database).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "down"]).expect("cut a host off");
    }

    /// Bring host `i` back.
    pub fn restore(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "up"]).expect("bring a host back");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the
        // pair's other end on the bridge.
        for h in &self.hosts {
            let _ = ip(&["netns", "delete", &h.name]);
            let _ = ip(&["link", "delete", &h.link]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}
