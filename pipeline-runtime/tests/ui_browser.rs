//! The web page in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs) loads the runs list and a live
//! run's page, sees the DAG's nodes change state as the run goes on (without a reload), opens a
//! step's log and a metrics plot, compares two runs, and re-runs one with an edited parameter.
//!
//! Without chromedriver the test says so and passes, unless `PIPELINE_REQUIRE_BROWSER=1` (as in
//! CI), where a missing browser is a failure. `PIPELINE_UI_SCREENSHOTS=DIR` keeps screenshots
//! of the main pages there (the README's come from it); else they go to the target folder.
#![cfg(feature = "ui")]

use fantoccini::{Client, ClientBuilder, Locator};
use pipeline_runtime::prelude::*;
use pipeline_runtime::{Config, Mode, step};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "fedcba9876543210fedcba9876543210";
/// How long anything the browser waits for may take, so that a broken test cannot hang.
const BOUND: Duration = Duration::from_secs(90);

#[component]
fn numbers(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

#[component]
fn total(values: Vec<f64>) -> f64 {
    for (i, v) in values.iter().enumerate() {
        step::report_scalar("loss", "train", i as i64, 1.0 / v);
    }
    println!("summing {} values", values.len());
    values.iter().sum()
}

#[pipeline(name = "browser chain", project = "ui-tests")]
fn chain(n: u32) -> f64 {
    let values = numbers(n);
    total(&values).get().unwrap_or(0.0)
}

/// Waits (in a worker process) until the file `go` exists in the state folder.
#[component]
fn wait_for(go: String) -> u64 {
    wait_for_file(&go);
    1
}

#[component]
fn after(x: u64, go: String) -> u64 {
    wait_for_file(&go);
    x + 1
}

/// A worker's configuration has its run's state folder.
fn wait_for_file(go: &str) {
    let path = Config::current().state_dir.join(go);
    let start = Instant::now();
    while !path.exists() && start.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[pipeline(name = "browser live", project = "ui-tests")]
fn live(first: String, second: String) -> Result<u64, HandleError> {
    let a = wait_for(first);
    after(&a, second).get()
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-browser").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromedriver() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PIPELINE_CHROMEDRIVER").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromedriver")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills chromedriver (and its browser) when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `check` holds, evaluating it again every 100 ms.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(client: &Client, script: &str) -> serde_json::Value {
    client.execute(script, vec![]).await.unwrap()
}

async fn node_status(client: &Client, step: &str) -> String {
    js(
        client,
        &format!("var n = document.querySelector('g.node[data-step=\"{step}\"]'); return n ? n.dataset.status : '';"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

async fn shoot(client: &Client, name: &str) {
    let dir = std::env::var_os("PIPELINE_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-browser"));
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("ui-{name}.png")), png).unwrap();
}

#[test]
fn the_page_works_in_a_real_browser() {
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var("PIPELINE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "PIPELINE_REQUIRE_BROWSER=1 but there is no chromedriver (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let state = folder("state");
    let config = Config::current().with_mode(Mode::Local).with_state_dir(&state);
    let a = config.scope(|| chain::run(3).unwrap());
    let b = config.scope(|| chain::run(5).unwrap());
    // A live run: its first step waits for `go1`, its second for `go2`.
    let (go1, go2) = (state.join("go1"), state.join("go2"));
    let live = {
        let config = config.clone();
        std::thread::spawn(move || config.scope(|| live::run("go1".into(), "go2".into()).unwrap()))
    };

    // The page, on a port of its own.
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    {
        let state = state.clone();
        std::thread::spawn(move || {
            let options = pipeline_runtime::ui::UiOptions {
                state,
                bind: "127.0.0.1:0".parse().unwrap(),
                token: Some(TOKEN.into()),
            };
            pipeline_runtime::ui::serve(options, |addr, _| tx.send(addr).unwrap()).unwrap();
        });
    }
    let addr = rx.recv_timeout(BOUND).unwrap();
    let base = format!("http://{addr}");

    let port = free_port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1100",
        ];
        // As root (CI, containers) Chromium runs only without its sandbox.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox");
        }
        let mut chrome = serde_json::json!({ "args": args });
        if Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = "/usr/bin/chromium".into();
        }
        caps.insert("goog:chromeOptions".into(), chrome);
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(start.elapsed() < BOUND, "chromedriver did not answer: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };

        // Log in: the token goes into a cookie; the runs list shows every run.
        client.goto(&format!("{base}/login?token={TOKEN}")).await.unwrap();
        for run in [a.run.id(), b.run.id()] {
            client
                .find(Locator::Css(&format!("tr[data-run=\"{run}\"]")))
                .await
                .unwrap();
        }
        let start = Instant::now();
        let live_id = loop {
            client.refresh().await.unwrap();
            let found = js(
                &client,
                "var r = [...document.querySelectorAll('tr.run')].find(t => t.textContent.includes('browser live')); \
                 return r ? r.dataset.run : '';",
            )
            .await;
            if let Some(id) = found.as_str().filter(|id| !id.is_empty()) {
                break id.to_string();
            }
            assert!(start.elapsed() < BOUND, "the live run is never listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        shoot(&client, "runs").await;

        // The live run's page: its nodes change state without a reload.
        client.goto(&format!("{base}/runs/{live_id}")).await.unwrap();
        js(&client, "window.notReloaded = true; return 1;").await;
        until("the first step runs", || async {
            node_status(&client, "wait_for").await == "running"
        })
        .await;
        shoot(&client, "live-run").await;
        std::fs::write(&go1, b"").unwrap();
        until("the first step completes and the second runs", || async {
            node_status(&client, "wait_for").await == "completed" && node_status(&client, "after").await == "running"
        })
        .await;
        std::fs::write(&go2, b"").unwrap();
        until("the run completes", || async {
            js(&client, "return document.querySelector('#run').dataset.status;").await == "completed"
        })
        .await;
        assert_eq!(
            js(&client, "return window.notReloaded === true;").await,
            serde_json::Value::Bool(true),
            "the page was updated in place"
        );
        assert!(live.join().unwrap().run.is_successful());

        // A finished run: its metrics plot, then a step's log.
        client.goto(&format!("{base}/runs/{}", b.run.id())).await.unwrap();
        client
            .find(Locator::Css("figure.plot[data-title=\"loss\"] svg"))
            .await
            .unwrap();
        shoot(&client, "run").await;
        client
            .find(Locator::Css("g.node[data-step=\"total\"]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the step page opens", || async {
            client.current_url().await.unwrap().path().ends_with("/steps/total")
        })
        .await;
        let log = client
            .find(Locator::Css("pre.log"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(log.contains("summing 5 values"), "{log}");
        shoot(&client, "step").await;

        // Compare the two chains from the list.
        client.goto(&format!("{base}/")).await.unwrap();
        for run in [a.run.id(), b.run.id()] {
            client
                .find(Locator::Css(&format!("input[name=runs][value=\"{run}\"]")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
        client
            .find(Locator::XPath("//button[text()='Compare selected']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let diff = client
            .wait()
            .at_most(BOUND)
            .for_element(Locator::Css("tr.diff[data-param=\"n\"]"))
            .await
            .unwrap();
        assert!(diff.text().await.unwrap().contains('5'));
        client.find(Locator::Css("figure.plot svg")).await.unwrap();
        shoot(&client, "compare").await;

        // Re-run the first chain with n = 7.
        client.goto(&format!("{base}/runs/{}/rerun", a.run.id())).await.unwrap();
        let n = client.find(Locator::Css("input[name=\"p:n\"]")).await.unwrap();
        n.clear().await.unwrap();
        n.send_keys("7").await.unwrap();
        client
            .find(Locator::Css("form.rerun button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the new run completes, followed live", || async {
            let status = js(
                &client,
                "var r = document.querySelector('#run'); return r ? r.dataset.status || '' : '';",
            )
            .await;
            status == "completed"
        })
        .await;
        let url = client.current_url().await.unwrap();
        assert_ne!(url.path(), format!("/runs/{}", a.run.id()), "a new run");
        let params = client
            .find(Locator::Css("table.kv"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(params.contains('7'), "{params}");
        client.close().await.unwrap();
    });
}
