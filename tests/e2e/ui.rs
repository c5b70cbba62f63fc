//! The web console in a real browser (headless Chromium by WebDriver, see
//! `plateau_webui::browser`) against a real `plateau dev`: what an operator does in it, end to
//! end. Each page visited is saved as a screenshot in `target/ui-screenshots/` (not committed).
//!
//! `plateau dev` runs on its own loopback addresses (`--ip 127.0.4.1`: the master on
//! 127.0.4.1:5050, the slaves on 127.0.4.2-4), so its ports are no other test's.

use std::path::PathBuf;
use std::time::Duration;

use plateau_webui::bench::{loaded_selector, measure_page_for};
use plateau_webui::browser::{descendants, processes_naming, Browser};

use super::support::{eventually, get_json, last_lines, Cluster, Dev};

/// The address `plateau dev` runs on in this file.
const IP: &str = "127.0.4.1";
/// Deadline of the browser's waits: tasks start, pass health checks and are seen by the
/// console through two event streams on a slow shared machine.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// The app deployed through the form.
const APP: &str = "ui-ticker";
/// Its command: prints `tick N` every second (N counting up) and serves HTTP on its port for
/// its health check, on its own host's address (no other test's task can hold that port).
const APP_CMD: &str = "python3 -u -c \"import http.server as h,os,threading as t,time,itertools as i;s=h.HTTPServer((os.environ['HOST'],int(os.environ['PORT0'])),h.SimpleHTTPRequestHandler);t.Thread(target=s.serve_forever,daemon=True).start();any(print('tick',n,flush=True) or time.sleep(1) for n in i.count())\"";

/// `plateau dev`'s work dir: dropped after the `Dev` declared after it has stopped, it kills any
/// task left (if `plateau dev` had to be killed), removes the slaves' cgroups and the folder.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        for i in 1..=3 {
            let slave = self.0.join(format!("slave-{i}"));
            plateau_slave::destroy_leftover_tasks(&slave);
            plateau_slave::remove_slave_cgroups(&slave);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The largest `tick N` in `text`.
fn last_tick(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.trim().parse().ok())
        .max()
}

#[test]
fn the_browser_harness_measures_a_page_and_leaves_no_process_behind() {
    actix_rt::System::new().block_on(async {
        let browser = Browser::start().await.expect("a headless Chromium");
        let (driver, dir) = (browser.driver_pid(), browser.dir().to_path_buf());
        let page = "data:text/html,<main id=page data-page=probe data-loaded=true>hello</main>";
        browser.goto(page).await.unwrap();
        let text = browser
            .wait_text("main#page", "to say hello", |t| t == "hello")
            .await
            .unwrap();
        assert_eq!(text, "hello");
        assert!(
            browser.renderer_rss_bytes().unwrap() > 1 << 20,
            "a renderer"
        );
        assert!(browser.js_heap_bytes().await.unwrap() > 0);
        let shot = browser.screenshot("harness-probe").await.unwrap();
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{} is a PNG", shot.display());
        // A deadline error names the selector and the page.
        let err = browser
            .wait_within("#nowhere", Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("#nowhere") && err.contains("data:text/html"),
            "{err}"
        );
        // A page Chromium will not open: the error says why.
        let err = browser
            .goto("http://127.0.0.1:5060/")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("ERR_UNSAFE_PORT"), "{err}");
        assert!(
            !descendants(driver).is_empty(),
            "Chromium runs below chromedriver"
        );
        drop(browser);
        assert!(
            descendants(driver).is_empty(),
            "nothing left below chromedriver"
        );
        let marker = dir.to_string_lossy();
        assert_eq!(
            processes_naming(&marker),
            Vec::<i32>::new(),
            "no Chromium left"
        );
        assert!(!dir.exists(), "{} removed", dir.display());

        // The benchmark driver on the same page, open for 2 s.
        let figures = measure_page_for(page, "probe", Duration::from_secs(2))
            .await
            .unwrap();
        assert!(figures.interactive_ms > 0.0, "{figures:?}");
        assert!(
            figures.interactive_ms <= figures.wall_ms + 1.0,
            "{figures:?}"
        );
        assert!(figures.loaded.renderer_rss_bytes > 1 << 20, "{figures:?}");
        assert!(figures.after.js_heap_bytes > 0, "{figures:?}");
        assert!(figures.open_secs >= 2.0, "{figures:?}");
    });
}

#[test]
fn console_deploys_scales_tails_a_task_graphs_jobs_and_destroys_in_a_real_browser() {
    let work = WorkDir(std::env::temp_dir().join(format!("plateau-e2e-ui-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    let log_path = std::env::temp_dir().join(format!("plateau-e2e-ui-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let dev = Dev::start(
        &[
            "--ip".as_ref(),
            IP.as_ref(),
            "--work-dir".as_ref(),
            work.0.as_os_str(),
        ],
        log,
    );
    let outcome = actix_rt::System::new().block_on(scenario());
    drop(dev);
    // plateau dev stopped on SIGINT: its tasks are gone with their cgroups.
    for i in 1..=3 {
        let left = super::support::task_cgroups(&work.0.join(format!("slave-{i}")));
        assert!(left.is_empty(), "slave-{i} left tasks behind: {left:?}");
    }
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail = last_lines(&log, 60);
        panic!(
            "{e}\n--- plateau dev (last lines of {}):\n{tail}",
            log_path.display()
        );
    }
    let _ = std::fs::remove_file(&log_path);
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

async fn scenario() -> Outcome {
    let master = format!("http://{IP}:5050");
    let marathon = format!("http://{IP}:8080");
    eventually(
        Duration::from_secs(120),
        "3 slaves, Marathon and Chronos registered",
        || async {
            get_json(&format!("{master}/master/state"))
                .await
                .is_some_and(|s| {
                    s["activated_slaves"].as_f64() == Some(3.0)
                        && s["frameworks"].as_array().is_some_and(|f| f.len() >= 2)
                })
        },
    )
    .await;
    let mut browser = Browser::start().await?;
    browser.set_deadline(WAIT_LIMIT);
    let result = steps(&browser, &master, &marathon).await;
    if result.is_err() {
        let _ = browser.screenshot("failure").await;
    }
    browser.close().await;
    result
}

/// Wait until page `page` shows its first data.
async fn loaded(browser: &Browser, page: &str) -> Outcome {
    browser.wait(&loaded_selector(page)).await?;
    Ok(())
}

async fn steps(browser: &Browser, master: &str, marathon: &str) -> Outcome {
    let row = format!("tr[data-app-id=\"/{APP}\"]");

    // The console, its cluster page: the three agents.
    browser.goto(&format!("{master}/")).await?;
    loaded(browser, "cluster").await?;
    browser
        .wait_text("[data-testid=agents-active]", "= 3", |t| t.trim() == "3")
        .await?;
    browser.screenshot("cluster").await?;
    browser.click("a[data-nav=agents]").await?;
    loaded(browser, "agents").await?;
    browser.wait_count("tr[data-agent-id]", 3).await?;
    browser.screenshot("agents").await?;

    // Deploy an app through the form.
    browser.click("a[data-nav=apps]").await?;
    loaded(browser, "apps").await?;
    browser.click("[data-testid=app-new]").await?;
    loaded(browser, "app-new").await?;
    let form = "form[data-testid=app-form]";
    for (name, value) in [
        ("id", APP),
        ("cmd", APP_CMD),
        ("cpus", "0.1"),
        ("mem", "32"),
        ("instances", "1"),
        ("healthPath", "/"),
    ] {
        browser
            .fill(&format!("{form} [name={name}]"), value)
            .await?;
    }
    browser.screenshot("app-new").await?;
    browser.click("[data-testid=app-submit]").await?;
    loaded(browser, "app").await?;

    // It runs and is healthy: its row in the apps list says so.
    browser.click("a[data-nav=apps]").await?;
    loaded(browser, "apps").await?;
    browser
        .wait_attr(&row, "data-running", "= 1", |v| v == "1")
        .await?;
    browser
        .wait_attr(&row, "data-healthy", "= 1", |v| v == "1")
        .await?;
    browser.screenshot("apps").await?;

    // Scale to 2 from the app's page: 2 running.
    browser
        .goto(&format!("{master}/#/marathon/apps/{APP}"))
        .await?;
    loaded(browser, "app").await?;
    browser.click("[data-testid=app-scale]").await?;
    browser.fill("input[data-testid=scale-input]", "2").await?;
    browser.click("[data-testid=scale-submit]").await?;
    browser.wait_count("tr[data-task-id]", 2).await?;
    browser.screenshot("app").await?;
    browser.click("a[data-nav=apps]").await?;
    loaded(browser, "apps").await?;
    browser
        .wait_attr(&row, "data-running", "= 2", |v| v == "2")
        .await?;

    // A task's page: its stdout follows live.
    browser
        .goto(&format!("{master}/#/marathon/apps/{APP}"))
        .await?;
    loaded(browser, "app").await?;
    browser.wait_count("tr[data-task-id]", 2).await?;
    browser.click("a[data-testid=task-link]").await?;
    loaded(browser, "task").await?;
    let stdout = "pre[data-testid=stdout]";
    let first = browser
        .wait_text(stdout, "with a tick line", |t| last_tick(t).is_some())
        .await?;
    let at_opening = last_tick(&first).expect("a tick");
    // Two seconds' worth later than anything shown at opening: printed after it was opened.
    let later = browser
        .wait_text(stdout, &format!("past tick {}", at_opening + 2), |t| {
            last_tick(t).is_some_and(|n| n > at_opening + 2)
        })
        .await?;
    assert!(last_tick(&later) > Some(at_opening + 2));
    browser.wait("[data-testid=task-state]").await?;
    browser.screenshot("task").await?;

    // The agent of one of its tasks lists it.
    let tasks = get_json(&format!("{marathon}/v2/apps/{APP}/tasks"))
        .await
        .ok_or("Marathon's tasks of the app")?;
    let agent = tasks["tasks"][0]["slaveId"]
        .as_str()
        .ok_or("a task's slaveId")?
        .to_string();
    browser.goto(&format!("{master}/#/agents/{agent}")).await?;
    loaded(browser, "agent").await?;
    browser.wait("tr[data-task-id]").await?;
    browser.screenshot("agent").await?;

    // Chronos: a job with a schedule, then a child of it; the edge in the graph.
    browser.click("a[data-nav=jobs]").await?;
    loaded(browser, "jobs").await?;
    for (name, command, schedule, parents) in [
        (
            "ui-parent",
            "echo parent",
            "R/2030-01-01T00:00:00Z/PT24H",
            "",
        ),
        ("ui-child", "echo child", "", "ui-parent"),
    ] {
        browser.goto(&format!("{master}/#/chronos/new")).await?;
        loaded(browser, "job-new").await?;
        let form = "form[data-testid=job-form]";
        browser.fill(&format!("{form} [name=name]"), name).await?;
        browser
            .fill(&format!("{form} [name=command]"), command)
            .await?;
        if !schedule.is_empty() {
            browser
                .fill(&format!("{form} [name=schedule]"), schedule)
                .await?;
        }
        if !parents.is_empty() {
            browser
                .fill(&format!("{form} [name=parents]"), parents)
                .await?;
        }
        browser.click("[data-testid=job-submit]").await?;
        // Submitted: the job exists (whatever page the console shows next).
        browser
            .poll(&format!("job {name} created"), WAIT_LIMIT, || async {
                get_json(&format!("http://{IP}:4400/scheduler/jobs"))
                    .await
                    .is_some_and(|jobs| {
                        jobs.as_array()
                            .is_some_and(|j| j.iter().any(|j| j["name"] == name))
                    })
                    .then_some(())
                    .ok_or_else(|| "not in Chronos' jobs".to_string())
            })
            .await?;
    }
    browser.goto(&format!("{master}/#/chronos")).await?;
    loaded(browser, "jobs").await?;
    browser.wait("tr[data-job=ui-parent]").await?;
    browser.wait("tr[data-job=ui-child]").await?;
    browser.screenshot("jobs").await?;
    browser.goto(&format!("{master}/#/chronos/graph")).await?;
    loaded(browser, "graph").await?;
    browser.wait("[data-edge=\"ui-parent->ui-child\"]").await?;
    browser.screenshot("graph").await?;

    // The other pages load.
    for (route, page) in [
        ("#/balancer", "balancer"),
        ("#/marathon/deployments", "deployments"),
        ("#/marathon/queue", "queue"),
    ] {
        browser.goto(&format!("{master}/{route}")).await?;
        loaded(browser, page).await?;
        browser.screenshot(page).await?;
    }

    // The benchmark driver on the console's cluster page (a browser of its own).
    let figures =
        measure_page_for(&format!("{master}/#/"), "cluster", Duration::from_secs(3)).await?;
    eprintln!(
        "cluster page, 3 agents: {}",
        serde_json::to_string(&figures)?
    );
    assert!(figures.interactive_ms > 0.0 && figures.loaded.js_heap_bytes > 0);

    // Destroy the app: its row goes away, and Marathon has no app left.
    browser
        .goto(&format!("{master}/#/marathon/apps/{APP}"))
        .await?;
    loaded(browser, "app").await?;
    browser.click("[data-testid=app-destroy]").await?;
    browser.click("[data-testid=confirm]").await?;
    browser.goto(&format!("{master}/#/marathon")).await?;
    loaded(browser, "apps").await?;
    browser.wait_gone(&row).await?;
    browser
        .poll("Marathon to have no app", WAIT_LIMIT, || async {
            match get_json(&format!("{marathon}/v2/apps")).await {
                Some(apps) if apps["apps"].as_array().is_some_and(|a| a.is_empty()) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
    Ok(())
}

/// A master that wants credentials: the console asks for them, refuses wrong ones, and once
/// signed in sends them on every call (its data and its event stream). A script's 401 carries
/// no Basic challenge (the browser's own password box would cover the console's form); a
/// plain client's does.
#[test]
fn the_console_asks_for_credentials_and_sends_them() {
    let mut cluster = Cluster::new("ui-login");
    let credentials = cluster.dir.join("credentials.json");
    std::fs::write(
        &credentials,
        r#"{"credentials": [{"principal": "ops", "secret": "ops-secret"}]}"#,
    )
    .unwrap();
    let master = cluster.start_master_with(&["--credentials", credentials.to_str().unwrap()]);
    let base = format!("http://{master}");
    actix_rt::System::new().block_on(async {
        let client = reqwest::Client::new();
        let summary = format!("{base}/ui/api/summary");
        eventually(Duration::from_secs(60), "the master answers", || async {
            client
                .get(&summary)
                .send()
                .await
                .is_ok_and(|r| r.status() == 401)
        })
        .await;
        let plain = client.get(&summary).send().await.unwrap();
        assert!(plain.headers().contains_key("www-authenticate"));
        let script = client
            .get(&summary)
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .unwrap();
        assert_eq!(script.status(), 401);
        assert!(!script.headers().contains_key("www-authenticate"));
        let page = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200, "the console's files are open");

        let mut browser = Browser::start().await.expect("a headless Chromium");
        browser.set_deadline(WAIT_LIMIT);
        let result: Outcome = async {
            browser.goto(&format!("{base}/#/agents")).await?;
            loaded(&browser, "login").await?;
            let form = "form[data-testid=login-form]";
            browser.fill(&format!("{form} [name=user]"), "ops").await?;
            browser
                .fill(&format!("{form} [name=password]"), "wrong")
                .await?;
            browser.click("[data-testid=login-submit]").await?;
            browser
                .wait_text("[data-testid=error]", "names the wrong password", |t| {
                    t.contains("wrong user or password")
                })
                .await?;
            browser
                .fill(&format!("{form} [name=password]"), "ops-secret")
                .await?;
            browser.click("[data-testid=login-submit]").await?;
            // Signed in: the page asked for shows its data (no agent in this cluster).
            loaded(&browser, "agents").await?;
            browser.goto(&format!("{base}/#/")).await?;
            loaded(&browser, "cluster").await?;
            browser
                .wait_text("[data-testid=agents-active]", "= 0", |t| t.trim() == "0")
                .await?;
            browser.screenshot("login-cluster").await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = browser.screenshot("login-failure").await;
        }
        browser.close().await;
        if let Err(e) = result {
            panic!("{e}");
        }
    });
}
