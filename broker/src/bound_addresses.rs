//! The addresses the listeners actually bound, reported once all are bound: a log line
//! and, when `bound_addresses_file` is set, a file replaced atomically. With port 0 in
//! a listen setting this is how operators, scripts and tests learn the chosen ports.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The listeners' bound addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAddresses {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub internal_listen: SocketAddr,
    /// The second client listener, when `external_listen` is set.
    pub external_listen: Option<SocketAddr>,
}

impl BoundAddresses {
    /// One `setting=address` line per listener, named like the settings.
    pub fn render(&self) -> String {
        let mut text = format!(
            "listen={}\nhttp_listen={}\ninternal_listen={}\n",
            self.listen, self.http_listen, self.internal_listen
        );
        if let Some(external) = self.external_listen {
            text.push_str(&format!("external_listen={external}\n"));
        }
        text
    }

    /// Logs the addresses and, if `file` is not empty, writes them to `file.tmp`,
    /// fsyncs it and renames it over `file`, so that a reader never sees half of it.
    pub fn report(&self, file: &Path) -> std::io::Result<()> {
        tracing::info!(
            listen = %self.listen,
            http_listen = %self.http_listen,
            internal_listen = %self.internal_listen,
            external_listen = self.external_listen.map(|address| address.to_string()),
            "listeners bound"
        );
        if file.as_os_str().is_empty() {
            return Ok(());
        }
        let mut temporary_name = file.as_os_str().to_owned();
        temporary_name.push(".tmp");
        let temporary = Path::new(&temporary_name);
        let mut out = std::fs::File::create(temporary)?;
        out.write_all(self.render().as_bytes())?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(temporary, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file holds exactly the three lines, and no temporary file is left.
    #[test]
    fn report_writes_the_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bound");
        std::fs::write(&file, "stale").unwrap();
        let addresses = BoundAddresses {
            listen: "127.0.0.1:1001".parse().unwrap(),
            http_listen: "127.0.0.1:1002".parse().unwrap(),
            internal_listen: "[::1]:1003".parse().unwrap(),
            external_listen: None,
        };
        addresses.report(&file).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "listen=127.0.0.1:1001\nhttp_listen=127.0.0.1:1002\ninternal_listen=[::1]:1003\n"
        );
        assert!(!dir.path().join("bound.tmp").exists());
        addresses.report(Path::new("")).unwrap();
        let external = BoundAddresses {
            external_listen: Some("0.0.0.0:1004".parse().unwrap()),
            ..addresses
        };
        assert!(
            external
                .render()
                .ends_with("\nexternal_listen=0.0.0.0:1004\n")
        );
    }
}
