//! The console's benchmark driver: how fast one page becomes interactive and how much memory
//! its tab holds, in a real headless Chromium ([`crate::browser`]).
//!
//! Time to interactive is read inside the page: a script installed before any of the page's
//! own (DevTools `Page.addScriptToEvaluateOnNewDocument`) watches the DOM and records
//! `performance.now()` (milliseconds since the navigation started) the moment
//! `main#page[data-page=PAGE][data-loaded=true]` first matches. The wall time around the
//! navigation and the wait is reported beside it (it adds WebDriver's round trips).
//!
//! The tab's memory is read after load and again after the page stayed open (live updates
//! running): the resident and proportional memory of the tab's renderer processes (those that
//! appeared after the browser started: each browser is fresh, one tab) and the page's JavaScript
//! heap.

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::{pss_bytes, rss_bytes, Browser, Result};

/// How long [`measure_page`] keeps the page open before its second memory reading.
pub const STAY_OPEN_DEFAULT: Duration = Duration::from_secs(30);
/// How long a page may take to become interactive before the measure fails.
const INTERACTIVE_LIMIT: Duration = Duration::from_secs(120);

/// Memory of the measured tab at one moment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TabMemory {
    /// Sum of the resident memory (`VmRSS`) of the tab's renderer processes.
    pub renderer_rss_bytes: u64,
    /// Sum of their proportional memory (`Pss`: pages shared with other Chromium processes
    /// counted in part).
    pub renderer_pss_bytes: u64,
    /// `performance.memory.usedJSHeapSize`.
    pub js_heap_bytes: u64,
    /// How many renderer processes were counted.
    pub renderers: usize,
}

/// What [`measure_page`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageFigures {
    /// The URL opened.
    pub url: String,
    /// The page's name (`data-page`).
    pub page: String,
    /// Time to interactive, from navigation start, read in the page (`performance.now()`).
    pub interactive_ms: f64,
    /// Wall time from the navigation command to seeing the page interactive.
    pub wall_ms: f64,
    /// The tab's memory once interactive.
    pub loaded: TabMemory,
    /// The tab's memory after it stayed open `open_secs`.
    pub after: TabMemory,
    /// The most resident memory of the tab's renderers seen while it stayed open (sampled
    /// every second).
    pub renderer_rss_bytes_max: u64,
    /// How long the page stayed open between the two readings.
    pub open_secs: f64,
}

/// Open `url` in a fresh browser tab and measure page `page` of the console: time to
/// interactive and the tab's memory after load and after 30 s open.
pub async fn measure_page(url: &str, page: &str) -> Result<PageFigures> {
    measure_page_for(url, page, STAY_OPEN_DEFAULT).await
}

/// As [`measure_page`], the page staying open `stay_open` before the second memory reading.
pub async fn measure_page_for(url: &str, page: &str, stay_open: Duration) -> Result<PageFigures> {
    let browser = Browser::start().await?;
    let figures = measure_in(&browser, url, page, stay_open).await;
    browser.close().await;
    figures
}

async fn measure_in(
    browser: &Browser,
    url: &str,
    page: &str,
    stay_open: Duration,
) -> Result<PageFigures> {
    let client = browser.client();
    // A fresh tab: the renderers there before it are not the tab's.
    let before = browser.renderer_pids();
    let blank = client.window().await?;
    let tab = client.new_window(true).await?;
    client.switch_to_window(blank).await?;
    client.close_window().await?;
    client.switch_to_window(tab.handle).await?;
    browser
        .devtools(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": interactive_probe(page) }),
        )
        .await?;

    let started = tokio::time::Instant::now(); // determinism-ok: a benchmark's wall time
    browser.goto(url).await?;
    let interactive_ms = browser
        .poll(
            &format!("page {page} interactive"),
            INTERACTIVE_LIMIT,
            || async {
                match browser
                    .execute("return window.__plateauInteractiveMs ?? null;", vec![])
                    .await
                {
                    Ok(Value::Number(n)) => n.as_f64().ok_or_else(|| n.to_string()),
                    Ok(other) => Err(format!("not yet ({other})")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;

    let tab_renderers = || {
        let now = browser.renderer_pids();
        let new: Vec<i32> = now.difference(&before).copied().collect();
        // The tab may have kept the renderer it was given first: then count them all.
        if new.is_empty() {
            now.into_iter().collect()
        } else {
            new
        }
    };
    let loaded = tab_memory(browser, &tab_renderers()).await?;
    let open = tokio::time::Instant::now(); // determinism-ok: a benchmark's wall time
    let mut rss_max = loaded.renderer_rss_bytes;
    while open.elapsed() < stay_open {
        tokio::time::sleep(Duration::from_secs(1).min(stay_open)).await;
        let rss: u64 = tab_renderers().iter().map(|&p| rss_bytes(p)).sum();
        rss_max = rss_max.max(rss);
    }
    let after = tab_memory(browser, &tab_renderers()).await?;
    rss_max = rss_max.max(after.renderer_rss_bytes);
    // Still the page asked for (a crash or an error page would make the figures meaningless).
    browser
        .wait_within(&loaded_selector(page), Duration::from_secs(10))
        .await?;
    Ok(PageFigures {
        url: url.to_string(),
        page: page.to_string(),
        interactive_ms,
        wall_ms,
        loaded,
        after,
        renderer_rss_bytes_max: rss_max,
        open_secs: open.elapsed().as_secs_f64(),
    })
}

async fn tab_memory(browser: &Browser, renderers: &[i32]) -> Result<TabMemory> {
    Ok(TabMemory {
        renderer_rss_bytes: renderers.iter().map(|&p| rss_bytes(p)).sum(),
        renderer_pss_bytes: renderers.iter().map(|&p| pss_bytes(p)).sum(),
        js_heap_bytes: browser.js_heap_bytes().await?,
        renderers: renderers.len(),
    })
}

/// The selector of page `page` once its first data is shown.
pub fn loaded_selector(page: &str) -> String {
    format!("main#page[data-page=\"{page}\"][data-loaded=\"true\"]")
}

/// The script run before the page's own: records when the page first shows its data.
fn interactive_probe(page: &str) -> String {
    let selector = serde_json::to_string(&loaded_selector(page)).expect("a string serializes");
    format!(
        r#"(() => {{
  const selector = {selector};
  const mark = () => {{
    if (window.__plateauInteractiveMs === undefined && document.querySelector(selector)) {{
      window.__plateauInteractiveMs = performance.now();
      return true;
    }}
    return window.__plateauInteractiveMs !== undefined;
  }};
  if (mark()) return;
  const observer = new MutationObserver(() => {{ if (mark()) observer.disconnect(); }});
  observer.observe(document, {{ subtree: true, childList: true, attributes: true }});
}})();"#
    )
}
