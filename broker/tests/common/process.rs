//! Real `fjord-broker` processes for integration tests: spawned with no `FJORD_*`
//! variable inherited, output to a log file (never the test's own stdout), every
//! listener on port 0 with the bound ports read from `bound_addresses_file`, and killed
//! and reaped when dropped, so that a failing test leaves no broker behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::Instant;

/// Longest a broker may take to bind, start or stop before the test fails.
pub const PROCESS_PATIENCE: Duration = Duration::from_secs(30);

/// The addresses a broker process reported in its bound-addresses file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub internal_listen: SocketAddr,
}

impl Bound {
    /// Parses `setting=address` lines; `None` if any of the three is missing.
    fn parse(text: &str) -> Option<Self> {
        let address = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
        };
        Some(Self {
            listen: address("listen")?,
            http_listen: address("http_listen")?,
            internal_listen: address("internal_listen")?,
        })
    }
}

/// A `fjord-broker` child process, killed and reaped on drop.
pub struct BrokerProcess {
    child: Option<Child>,
    addresses_file: PathBuf,
    log_file: PathBuf,
}

/// The broker binary with nothing inherited that could change its settings.
pub fn broker_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fjord-broker"));
    clean_environment(&mut command);
    command
}

/// Removes every `FJORD_*` variable from what `command` inherits, logs at info level,
/// and gives it no stdin.
pub fn clean_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FJORD_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null());
}

impl BrokerProcess {
    /// Starts a broker on `data_dir` with every listener on port 0 unless `arguments`
    /// name its flag. `work_dir` receives its log and address files.
    pub fn spawn(work_dir: &Path, data_dir: &Path, arguments: &[&str]) -> Self {
        let mut command = broker_command();
        for flag in ["--listen", "--http-listen", "--internal-listen"] {
            if !arguments.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command.args(["--data-dir", data_dir.to_str().unwrap()]);
        command.args(arguments);
        Self::spawn_command(work_dir, command)
    }

    /// Starts `command` (from [`broker_command`]), adding `--bound-addresses-file`.
    pub fn spawn_command(work_dir: &Path, mut command: Command) -> Self {
        let (addresses_file, log_file) = Self::prepare_files(work_dir, &mut command);
        let log = std::fs::File::create(&log_file).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        Self::start(command, addresses_file, log_file)
    }

    /// [`spawn_command`](Self::spawn_command) with stdout into a pipe instead of the log
    /// file (stderr still goes to the log file): for tests of what the broker writes when
    /// its output is not a terminal. Every stdout line arrives on the returned channel,
    /// read by a thread of its own until the pipe closes.
    pub fn spawn_command_with_stdout_pipe(
        work_dir: &Path,
        mut command: Command,
    ) -> (Self, mpsc::Receiver<String>) {
        let (addresses_file, log_file) = Self::prepare_files(work_dir, &mut command);
        let log = std::fs::File::create(&log_file).unwrap();
        command.stdout(Stdio::piped()).stderr(log);
        let mut process = Self::start(command, addresses_file, log_file);
        let stdout = process.child.as_mut().unwrap().stdout.take().unwrap();
        let (sender, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        (process, lines)
    }

    /// Names this start's log file, removes a stale addresses file and adds
    /// `--bound-addresses-file` to `command`.
    fn prepare_files(work_dir: &Path, command: &mut Command) -> (PathBuf, PathBuf) {
        let addresses_file = work_dir.join("bound-addresses");
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let log_file = work_dir.join(format!(
            "broker-{}.log",
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::remove_file(&addresses_file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("cannot remove {}: {error}", addresses_file.display()),
        }
        command.arg("--bound-addresses-file").arg(&addresses_file);
        (addresses_file, log_file)
    }

    fn start(mut command: Command, addresses_file: PathBuf, log_file: PathBuf) -> Self {
        let child = command.spawn().expect("fjord-broker starts");
        Self {
            child: Some(child),
            addresses_file,
            log_file,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the broker wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// One look: the bound addresses if written, the exit status if the broker exited
    /// first, `None` if neither yet.
    fn poll_addresses(&mut self) -> Option<Result<Bound, ExitStatus>> {
        if let Ok(text) = std::fs::read_to_string(&self.addresses_file)
            && let Some(bound) = Bound::parse(&text)
        {
            return Some(Ok(bound));
        }
        let status = self.child.as_mut().expect("running").try_wait().unwrap()?;
        self.child = None;
        Some(Err(status))
    }

    /// The bound addresses, once the broker wrote them; `Err` with the exit status
    /// if the broker exited first. Fails the test after [`PROCESS_PATIENCE`].
    pub async fn try_addresses(&mut self) -> Result<Bound, ExitStatus> {
        let deadline = Instant::now() + PROCESS_PATIENCE;
        loop {
            if let Some(outcome) = self.poll_addresses() {
                return outcome;
            }
            assert!(
                Instant::now() < deadline,
                "the broker reported no addresses within {PROCESS_PATIENCE:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`try_addresses`](Self::try_addresses) for tests without a runtime.
    pub fn try_addresses_blocking(&mut self) -> Result<Bound, ExitStatus> {
        let deadline = std::time::Instant::now() + PROCESS_PATIENCE;
        loop {
            if let Some(outcome) = self.poll_addresses() {
                return outcome;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker reported no addresses within {PROCESS_PATIENCE:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`addresses`](Self::addresses) for tests without a runtime.
    pub fn addresses_blocking(&mut self) -> Bound {
        match self.try_addresses_blocking() {
            Ok(bound) => bound,
            Err(status) => panic!("the broker exited ({status}); log:\n{}", self.log()),
        }
    }

    /// The exit status if the process has exited (and is now reaped), else `None`.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut().expect("running").try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// The bound addresses; fails the test if the broker exits instead.
    pub async fn addresses(&mut self) -> Bound {
        match self.try_addresses().await {
            Ok(bound) => bound,
            Err(status) => panic!("the broker exited ({status}); log:\n{}", self.log()),
        }
    }

    /// Waits for the process to exit by itself, up to [`PROCESS_PATIENCE`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_PATIENCE;
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not exit within {PROCESS_PATIENCE:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn send_terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGTERM (graceful shutdown), then waits for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.send_terminate();
        self.wait_exit().await
    }

    /// [`terminate`](Self::terminate) for tests without a runtime.
    pub fn terminate_blocking(&mut self) -> ExitStatus {
        self.send_terminate();
        let deadline = std::time::Instant::now() + PROCESS_PATIENCE;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not exit within {PROCESS_PATIENCE:?} of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                eprintln!("cannot kill fjord-broker {}: {error}", child.id());
            }
            if let Err(error) = child.wait() {
                eprintln!("cannot reap fjord-broker {}: {error}", child.id());
            }
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if self.child.is_some() && std::thread::panicking() {
            eprintln!("fjord-broker log:\n{}", self.log());
        }
        self.kill();
    }
}

/// Starts a broker that must bind the client listener to `listen` again (a restart on
/// the address clients know). The port was freed by the previous process; if something
/// else holds it for a moment the start is retried until [`PROCESS_PATIENCE`] ends.
pub async fn respawn_on(
    work_dir: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    arguments: &[&str],
) -> (BrokerProcess, Bound) {
    let listen = listen.to_string();
    let deadline = Instant::now() + PROCESS_PATIENCE;
    loop {
        let mut arguments_with_listen = arguments.to_vec();
        arguments_with_listen.extend(["--listen", &listen]);
        let mut process = BrokerProcess::spawn(work_dir, data_dir, &arguments_with_listen);
        match process.try_addresses().await {
            Ok(bound) => return (process, bound),
            Err(status) => {
                let log = process.log();
                assert!(
                    log.contains("cannot bind the client listener") && Instant::now() < deadline,
                    "the restarted broker exited ({status}); log:\n{log}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// [`respawn_on`] for tests without a runtime, with the HTTP listener also on the
/// address it had (`http_listen`), as an operator's restart would be.
pub fn respawn_on_blocking(
    work_dir: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    http_listen: SocketAddr,
    arguments: &[&str],
) -> (BrokerProcess, Bound) {
    let listen = listen.to_string();
    let http_listen = http_listen.to_string();
    let deadline = std::time::Instant::now() + PROCESS_PATIENCE;
    loop {
        let mut arguments_with_listen = arguments.to_vec();
        arguments_with_listen.extend(["--listen", &listen, "--http-listen", &http_listen]);
        let mut process = BrokerProcess::spawn(work_dir, data_dir, &arguments_with_listen);
        match process.try_addresses_blocking() {
            Ok(bound) => return (process, bound),
            Err(status) => {
                let log = process.log();
                let port_taken = log.contains("cannot bind the client listener")
                    || log.contains("cannot bind the HTTP listener");
                assert!(
                    port_taken && std::time::Instant::now() < deadline,
                    "the restarted broker exited ({status}); log:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A port for a listener whose address other processes must know before it starts: a
/// voter of a metadata quorum is given every voter's internal address, so port 0
/// cannot serve there. The port is taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where no port-0 listener of any test
/// lands, from a start that depends on the process id, a different one at each call
/// in a process, and is checked free by binding it once.
pub fn port_below_the_ephemeral_range() -> u16 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_owned());
    let ephemeral_low: usize = range
        .split_whitespace()
        .next()
        .and_then(|low| low.parse().ok())
        .unwrap_or(32768);
    const LOWEST: usize = 10_000;
    assert!(
        ephemeral_low > LOWEST + 1_000,
        "the ephemeral port range starts at {ephemeral_low}: no room below it"
    );
    let span = ephemeral_low - LOWEST;
    let start = (std::process::id() as usize * 7919) % span;
    for _ in 0..span {
        let port = LOWEST + (start + CALLS.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOWEST} and {ephemeral_low}");
}

/// Runs a helper command (e.g. `mount`) to its end with its output piped, killing and
/// reaping it if it is still running after [`PROCESS_PATIENCE`]; `Err` if it cannot
/// be started.
pub fn run_to_end(mut command: Command) -> std::io::Result<std::process::Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let read_all = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Err(error) = pipe.read_to_end(&mut bytes) {
                eprintln!("reading a child's output failed: {error}");
            }
            bytes
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + PROCESS_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            if let Err(error) = child.kill() {
                eprintln!("cannot kill {command:?}: {error}");
            }
            if let Err(error) = child.wait() {
                eprintln!("cannot reap {command:?}: {error}");
            }
            panic!("{command:?} did not finish within {PROCESS_PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}
