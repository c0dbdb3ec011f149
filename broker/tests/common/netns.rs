//! A private network for broker processes: one Linux network namespace per broker, all
//! on one bridge, and the test's own namespace on it too, so that clients in the test
//! reach every broker. Faults are firewall rules inside a broker's namespace: dropping
//! its packets to and from some brokers partitions it from them while clients still
//! reach it. Everything lives on a private subnet (10.231.x.0/24) that leaves nowhere,
//! and is removed when the network is dropped, a failing test included.
//!
//! The bridge sits in a namespace of its own: the host's firewall (Docker sets the
//! FORWARD policy to DROP) then never sees the brokers' traffic.
//!
//! Needs `ip` and `iptables` and the right to create namespaces (root);
//! [`Network::create`] says why when it cannot.

use std::net::Ipv4Addr;
use std::process::Command;

/// The namespaces, bridge and veth pairs of one test's network.
pub struct Network {
    /// Prefix of every name this network creates.
    name: String,
    subnet: u8,
    brokers: usize,
}

impl Network {
    /// A network of `brokers` namespaces, or why it cannot be made here.
    pub fn create(brokers: usize) -> Result<Self, String> {
        if !is_root() {
            return Err("network namespaces need root".to_owned());
        }
        let pid = std::process::id();
        let network = Self {
            // Interface names are at most 15 bytes: "fj<5 digits>h" fits.
            name: format!("fj{}", pid % 100_000),
            subnet: (pid % 200 + 20) as u8,
            brokers,
        };
        // A network of an earlier run of this pid that was not cleaned up.
        network.remove();
        let switch = network.switch();
        let host_leg = format!("{}h", network.name);
        let gateway = format!("10.231.{}.254/24", network.subnet);
        let mut steps: Vec<Vec<String>> = vec![
            args(&["netns", "add", &switch]),
            args(&["-n", &switch, "link", "add", "br0", "type", "bridge"]),
            args(&["-n", &switch, "link", "set", "br0", "up"]),
            args(&[
                "link", "add", &host_leg, "type", "veth", "peer", "name", "ph", "netns", &switch,
            ]),
            args(&["addr", "add", &gateway, "dev", &host_leg]),
            args(&["link", "set", &host_leg, "up"]),
            args(&["-n", &switch, "link", "set", "ph", "master", "br0"]),
            args(&["-n", &switch, "link", "set", "ph", "up"]),
        ];
        for broker in 1..=brokers {
            let namespace = network.namespace(broker);
            let port = format!("p{broker}");
            let address = format!("{}/24", network.address(broker));
            steps.extend([
                args(&["netns", "add", &namespace]),
                args(&[
                    "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &namespace,
                ]),
                args(&["-n", &switch, "link", "set", &port, "master", "br0"]),
                args(&["-n", &switch, "link", "set", &port, "up"]),
                args(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"]),
                args(&["-n", &namespace, "link", "set", "eth0", "up"]),
                args(&["-n", &namespace, "link", "set", "lo", "up"]),
            ]);
        }
        for step in steps {
            if let Err(error) = run("ip", &step) {
                return Err(format!("cannot set up the test network: {error}"));
            }
        }
        Ok(network)
    }

    /// Broker `broker`'s address (1-based).
    pub fn address(&self, broker: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, broker as u8)
    }

    /// The command that runs `program` in broker `broker`'s namespace.
    pub fn command(&self, broker: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(broker), program]);
        command
    }

    /// Drops every packet between broker `broker` and each of `others`, both ways.
    pub fn cut(&self, broker: usize, others: &[usize]) {
        for &other in others {
            let peer = self.address(other).to_string();
            for rule in [["INPUT", "-s"], ["OUTPUT", "-d"]] {
                self.iptables(broker, &["-A", rule[0], rule[1], &peer, "-j", "DROP"]);
            }
        }
    }

    /// Removes every rule of [`Self::cut`] from broker `broker`'s namespace.
    pub fn heal(&self, broker: usize) {
        self.iptables(broker, &["-F"]);
    }

    fn iptables(&self, broker: usize, rule: &[&str]) {
        let mut arguments = args(&["netns", "exec", &self.namespace(broker), "iptables"]);
        arguments.extend(rule.iter().map(|part| (*part).to_owned()));
        run("ip", &arguments).unwrap_or_else(|error| panic!("{error}"));
    }

    fn namespace(&self, broker: usize) -> String {
        format!("{}-{broker}", self.name)
    }

    fn switch(&self) -> String {
        format!("{}-net", self.name)
    }

    /// Deletes the namespaces; the veth pairs and the bridge go with them.
    fn remove(&self) {
        let mut namespaces: Vec<String> = (1..=self.brokers).map(|b| self.namespace(b)).collect();
        namespaces.push(self.switch());
        for namespace in namespaces {
            // Absent when set-up failed half way, or on the first run: no matter.
            let _absent_is_fine = Command::new("ip")
                .args(["netns", "del", &namespace])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

fn run(program: &str, arguments: &[String]) -> Result<(), String> {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .map_err(|error| format!("{program} cannot run: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
