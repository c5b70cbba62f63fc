//! A real browser for the console's end-to-end tests and its benchmark: headless Chromium driven
//! by WebDriver (Debian's `chromium` and `chromium-driver`), through fantoccini over plain HTTP
//! to a `chromedriver` on loopback.
//!
//! Everything here does I/O (processes, `/proc`, files) and waits on real time; nothing here
//! runs in a cluster.
//!
//! - [`Browser::start`] starts `chromedriver` on a free loopback port (it picks one itself and
//!   says which), which starts one headless Chromium with a fresh profile in a temporary folder.
//!   Dropping the [`Browser`] (also while a test panics) kills `chromedriver`, every Chromium
//!   process it started (they share its process group; the crash handler, which leaves the
//!   group, names the temporary folder on its command line) and removes the folder.
//! - Waits poll every 100 ms up to a deadline ([`Browser::set_deadline`], 60 s by default);
//!   a deadline error names what was awaited, what was last seen and the page's URL.
//! - [`crate::bench::measure_page`] is the benchmark driver: time to interactive of one page of the console
//!   and the memory of its tab, after load and after it stayed open a while.
//!
//! ```no_run
//! # async fn example() -> Result<(), plateau_webui::browser::Error> {
//! let browser = plateau_webui::browser::Browser::start().await?;
//! browser.goto("http://127.0.0.1:5050/#/agents").await?;
//! browser.wait("main#page[data-page=agents][data-loaded=true]").await?;
//! browser.screenshot("agents").await?;
//! browser.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The Chromium binary itself (Debian's `/usr/bin/chromium` is a shell script that adds flags
/// of its own before exec'ing this one).
const CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";
/// Debian's launcher script, used when the binary is elsewhere.
const CHROMIUM_LAUNCHER: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`.
const CHROMEDRIVER: &str = "chromedriver";
/// The browser window, in CSS pixels.
const WINDOW: (u32, u32) = (1400, 900);
/// How long `chromedriver` may take to say which port it listens on.
const DRIVER_START_LIMIT: Duration = Duration::from_secs(30);
/// How often a wait polls the page.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The default deadline of a wait (a slow shared machine: generous).
const DEADLINE_DEFAULT: Duration = Duration::from_secs(60);
/// How long closing the WebDriver session may take before the processes are killed anyway.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// What the browser harness reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Chromium or ChromeDriver is not installed.
    #[error("{0} not found: install Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver)")]
    Missing(String),
    /// `chromedriver` did not start.
    #[error("starting chromedriver: {0}")]
    Driver(String),
    /// The WebDriver session could not be created (Chromium did not start).
    #[error("starting a Chromium session: {0}")]
    Session(#[from] fantoccini::error::NewSessionError),
    /// A WebDriver command failed.
    #[error("WebDriver: {0}")]
    Command(#[from] fantoccini::error::CmdError),
    /// A wait reached its deadline.
    #[error("timed out after {limit:?} waiting for {what} (last seen: {last}) on {url}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// What was seen last (an error, a value, or "nothing").
        last: String,
        /// The page's URL at the deadline.
        url: String,
        /// The deadline.
        limit: Duration,
    },
    /// The page answered a script with something unexpected.
    #[error("unexpected answer from the page: {0}")]
    Page(String),
    /// A file or `/proc` could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A result of the browser harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One headless Chromium and its `chromedriver`, killed on drop. See the [module docs](self).
pub struct Browser {
    client: Client,
    driver: Child,
    /// Temporary folder: the profile, `HOME` and the crash handler's database.
    dir: PathBuf,
    deadline: Duration,
    screenshots: PathBuf,
}

/// Distinguishes the temporary folders of the browsers of one process.
static BROWSERS_STARTED: AtomicU64 = AtomicU64::new(0);

impl Browser {
    /// Start `chromedriver` and a headless Chromium (window 1400x900, a fresh profile).
    pub async fn start() -> Result<Browser> {
        let chromium = [CHROMIUM_BINARY, CHROMIUM_LAUNCHER]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| Error::Missing(format!("Chromium ({CHROMIUM_LAUNCHER})")))?;
        let n = BROWSERS_STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("plateau-browser-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("profile"))?;
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg("--port=0")
            // Chromium inherits these: its crash handler keeps its database (and so names this
            // folder on its command line) and any stray config under the temporary folder.
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: Chromium and its helpers join it, and one kill reaches
            // them all.
            .process_group(0);
        let driver = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Missing(format!("ChromeDriver ({CHROMEDRIVER})")));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Driver(e.to_string()));
            }
        };
        // From here on a failure must kill what was started: `Guard` does until disarmed.
        let mut guard = Guard(Some((driver, dir)));
        let (driver, dir) = guard.0.as_mut().expect("armed");
        let port = driver_port(driver)?;
        let dir = dir.clone();
        let driver_url = format!("http://127.0.0.1:{port}");
        let args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // performance.memory without its coarse rounding (the benchmark reads it).
            "--enable-precise-memory-info",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", dir.join("profile").display()),
        ])
        .collect();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await?;
        client.set_window_size(WINDOW.0, WINDOW.1).await?;
        let (driver, dir) = guard.0.take().expect("armed");
        Ok(Browser {
            client,
            driver,
            dir,
            deadline: DEADLINE_DEFAULT,
            screenshots: screenshots_dir(),
        })
    }

    /// The process id of this browser's `chromedriver` (Chromium runs below it).
    pub fn driver_pid(&self) -> i32 {
        self.driver.id() as i32
    }

    /// The temporary folder of this browser (profile, `HOME`), removed on drop; every process
    /// of this browser names it on its command line.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fantoccini client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The deadline of the waits from now on.
    pub fn set_deadline(&mut self, limit: Duration) {
        self.deadline = limit;
    }

    /// The folder screenshots are written to (`target/ui-screenshots`, or
    /// `$PLATEAU_UI_SCREENSHOTS`).
    pub fn screenshots_dir(&self) -> &Path {
        &self.screenshots
    }

    /// Open `url` (returns once the document has loaded; a hash route's data comes later: wait
    /// for it).
    /// A page Chromium could not open (its error page: a refused connection, a port it will
    /// not use such as 5060) is an error naming Chromium's reason.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client.goto(url).await?;
        let error = self
            .execute(
                "return document.documentURI.startsWith('chrome-error:') \
                   ? document.body.innerText : null;",
                vec![],
            )
            .await?;
        match error {
            Value::String(text) => Err(Error::Page(format!(
                "Chromium could not open {url}: {}",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ))),
            _ => Ok(()),
        }
    }

    /// The page's URL now.
    pub async fn url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        }
    }

    /// Poll `probe` every 100 ms until it gives a value, up to `limit`; the error names `what`
    /// and the last thing `probe` saw (its `Err` text).
    pub async fn poll<T, F, Fut>(&self, what: &str, limit: Duration, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = tokio::time::Instant::now() + limit; // determinism-ok: a test harness's deadline in real time
        loop {
            let last = match probe().await {
                Ok(v) => return Ok(v),
                Err(last) => last,
            };
            if tokio::time::Instant::now() >= deadline {
                // determinism-ok: as above
                return Err(Error::Timeout {
                    what: what.to_string(),
                    last,
                    url: self.url().await,
                    limit,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Wait (up to the deadline) for an element matching the CSS `selector`.
    pub async fn wait(&self, selector: &str) -> Result<Element> {
        self.wait_within(selector, self.deadline).await
    }

    /// Wait up to `limit` for an element matching the CSS `selector`.
    pub async fn wait_within(&self, selector: &str, limit: Duration) -> Result<Element> {
        self.poll(&format!("`{selector}`"), limit, || async {
            self.client
                .find(Locator::Css(selector))
                .await
                .map_err(|e| short(&e))
        })
        .await
    }

    /// How many elements match `selector` now.
    pub async fn count(&self, selector: &str) -> Result<usize> {
        Ok(self.client.find_all(Locator::Css(selector)).await?.len())
    }

    /// Wait until exactly `n` elements match `selector`.
    pub async fn wait_count(&self, selector: &str, n: usize) -> Result<()> {
        self.poll(&format!("{n} of `{selector}`"), self.deadline, || async {
            match self.count(selector).await {
                Ok(found) if found == n => Ok(()),
                Ok(found) => Err(format!("{found} of them")),
                Err(e) => Err(short(&e)),
            }
        })
        .await
    }

    /// Wait until no element matches `selector`.
    pub async fn wait_gone(&self, selector: &str) -> Result<()> {
        self.poll(
            &format!("`{selector}` to go away"),
            self.deadline,
            || async {
                match self.client.find_all(Locator::Css(selector)).await {
                    Ok(found) if found.is_empty() => Ok(()),
                    Ok(found) => Err(format!("{} still there", found.len())),
                    Err(e) => Err(short(&e)),
                }
            },
        )
        .await
    }

    /// Wait until the element matching `selector` has attribute `attr` with a value for which
    /// `cond` holds; returns that value.
    pub async fn wait_attr(
        &self,
        selector: &str,
        attr: &str,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.poll(
            &format!("`{selector}` attribute {attr} {what}"),
            self.deadline,
            || async {
                let element = self
                    .client
                    .find(Locator::Css(selector))
                    .await
                    .map_err(|e| short(&e))?;
                match element.attr(attr).await.map_err(|e| short(&e))? {
                    Some(v) if cond(&v) => Ok(v),
                    Some(v) => Err(format!("{attr}={v:?}")),
                    None => Err(format!("no attribute {attr}")),
                }
            },
        )
        .await
    }

    /// Wait until the text of the element matching `selector` satisfies `cond`; returns it.
    pub async fn wait_text(
        &self,
        selector: &str,
        what: &str,
        cond: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.poll(
            &format!("text of `{selector}` {what}"),
            self.deadline,
            || async {
                let element = self
                    .client
                    .find(Locator::Css(selector))
                    .await
                    .map_err(|e| short(&e))?;
                let text = element.text().await.map_err(|e| short(&e))?;
                if cond(&text) {
                    Ok(text)
                } else {
                    Err(format!("text {:?}", tail(&text, 300)))
                }
            },
        )
        .await
    }

    /// Click the element matching `selector` once it is there (retried while the page
    /// re-renders it or something covers it).
    pub async fn click(&self, selector: &str) -> Result<()> {
        self.poll(
            &format!("a click on `{selector}`"),
            self.deadline,
            || async {
                let element = self
                    .client
                    .find(Locator::Css(selector))
                    .await
                    .map_err(|e| short(&e))?;
                element.click().await.map_err(|e| short(&e))
            },
        )
        .await
    }

    /// Replace the value of the input (or textarea) matching `selector` with `text`, as typed.
    pub async fn fill(&self, selector: &str, text: &str) -> Result<()> {
        self.poll(&format!("filling `{selector}`"), self.deadline, || async {
            let element = self
                .client
                .find(Locator::Css(selector))
                .await
                .map_err(|e| short(&e))?;
            element.clear().await.map_err(|e| short(&e))?;
            element.send_keys(text).await.map_err(|e| short(&e))?;
            match element.prop("value").await.map_err(|e| short(&e))? {
                Some(v) if v == text => Ok(()),
                other => Err(format!("value {other:?}")),
            }
        })
        .await
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Write a screenshot of the window to `<screenshots dir>/NAME.png`; its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        std::fs::create_dir_all(&self.screenshots)?;
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.screenshots.join(format!("{file}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The sum of the resident memory of Chromium's renderer processes (`--type=renderer`)
    /// under this browser's `chromedriver`, read from `/proc`.
    pub fn renderer_rss_bytes(&self) -> Result<u64> {
        let renderers = self.renderer_pids();
        Ok(renderers.iter().map(|&pid| rss_bytes(pid)).sum())
    }

    /// The renderer processes (`--type=renderer`) under this browser's `chromedriver`.
    pub fn renderer_pids(&self) -> BTreeSet<i32> {
        descendants(self.driver.id() as i32)
            .into_iter()
            .filter(|&pid| {
                // Chromium rewrites its process title: one argument may hold them all.
                cmdline(pid)
                    .iter()
                    .any(|arg| arg.split(' ').any(|a| a == "--type=renderer"))
            })
            .collect()
    }

    /// The JavaScript heap the page uses (`performance.memory.usedJSHeapSize`).
    pub async fn js_heap_bytes(&self) -> Result<u64> {
        let used = self
            .execute("return performance.memory.usedJSHeapSize;", vec![])
            .await?;
        used.as_u64()
            .or_else(|| used.as_f64().map(|f| f as u64))
            .ok_or_else(|| Error::Page(format!("usedJSHeapSize {used}")))
    }

    /// Run a DevTools protocol command on the current tab (chromedriver's `goog/cdp/execute`).
    pub async fn devtools(&self, cmd: &str, params: Value) -> Result<Value> {
        Ok(self
            .client
            .issue_cmd(DevTools {
                cmd: cmd.to_string(),
                params,
            })
            .await?)
    }

    /// Close the WebDriver session (Chromium quits), then kill whatever is left; as dropping,
    /// but gentler.
    pub async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_LIMIT, self.client.clone().close()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_all(&mut self.driver, &self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills a half-started browser (chromedriver, its folder) unless disarmed.
struct Guard(Option<(Child, PathBuf)>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((mut driver, dir)) = self.0.take() {
            kill_all(&mut driver, &dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Read chromedriver's "started successfully on port N" line; keep draining its output after.
fn driver_port(driver: &mut Child) -> Result<u16> {
    let stdout = driver
        .stdout
        .take()
        .ok_or_else(|| Error::Driver("no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut said = Vec::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim().trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = tx.send(Ok(port));
                // Its later output is dropped, so that it never blocks on a full pipe.
                for _ in lines.by_ref() {}
                return;
            }
            said.push(line);
        }
        let _ = tx.send(Err(said.join("\n")));
    });
    match rx.recv_timeout(DRIVER_START_LIMIT) {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(said)) => Err(Error::Driver(format!("it exited saying: {said}"))),
        Err(_) => Err(Error::Driver(format!(
            "no port announced within {DRIVER_START_LIMIT:?}"
        ))),
    }
}

/// Kill chromedriver, every process of its group and of its tree, and any process whose command
/// line names `dir` (Chromium's crash handler leaves the group); reap chromedriver.
fn kill_all(driver: &mut Child, dir: &Path) {
    let pid = driver.id() as i32;
    let tree = descendants(pid);
    // SAFETY: signals to our own child's process group and to the processes it started.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
        for &p in &tree {
            libc::kill(p, libc::SIGKILL);
        }
    }
    let _ = driver.wait();
    let marker = dir.to_string_lossy().into_owned();
    for _ in 0..50 {
        let left = processes_naming(&marker);
        if left.is_empty() {
            return;
        }
        for p in left {
            // SAFETY: a process started by this browser (its command line names our folder).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Every live process (not a zombie: those have no command line) whose command line contains
/// `marker`.
pub fn processes_naming(marker: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| cmdline(pid).iter().any(|arg| arg.contains(marker)))
        .collect()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent of `pid` from `/proc/PID/stat` (the field after the parenthesised name).
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` in the process tree, now.
pub fn descendants(root: i32) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for pid in all_pids() {
        if let Some(ppid) = parent(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if found.insert(c) {
                stack.push(c);
            }
        }
    }
    found
}

/// A `kB` field of `/proc/PID/status` or `/proc/PID/smaps_rollup`, in bytes (0 if gone).
fn proc_kb(pid: i32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory of `pid` (`VmRSS`), 0 if it is gone.
pub fn rss_bytes(pid: i32) -> u64 {
    proc_kb(pid, "status", "VmRSS:")
}

/// Proportional memory of `pid` (`Pss`: shared pages divided among their sharers), 0 if gone.
pub fn pss_bytes(pid: i32) -> u64 {
    proc_kb(pid, "smaps_rollup", "Pss:")
}

/// Where screenshots go: `$PLATEAU_UI_SCREENSHOTS`, else `ui-screenshots` in the cargo target
/// folder of the running executable (the folder holding `CACHEDIR.TAG` above it), else
/// `target/ui-screenshots` under the current folder.
fn screenshots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLATEAU_UI_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .take(4)
                .find(|d| d.join("CACHEDIR.TAG").exists())
                .map(|d| d.join("ui-screenshots"))
        })
        .unwrap_or_else(|| PathBuf::from("target/ui-screenshots"))
}

/// The first line of an error, for a deadline message.
fn short(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// The last `n` characters of `text`.
fn tail(text: &str, n: usize) -> &str {
    let start = text
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    &text[start..]
}

/// chromedriver's DevTools passthrough: `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct DevTools {
    cmd: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}
