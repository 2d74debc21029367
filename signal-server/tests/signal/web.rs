//! The client module and demo page are served with their content types and headers, from the
//! binary or from `--web-dir`, and not at all with `--web false`.

use crate::support::Server;
use crate::support::redis::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_module_and_demo_are_served() {
    let s = Server::start(None, &[]).await;
    let module = s
        .http
        .get(s.url("/client/v1/switchboard.js"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), 200);
    let headers = module.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Apps on other origins import the module: a module script needs CORS.
    assert!(
        headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
    let shipped = include_str!("../../web/client/switchboard.js");
    assert_eq!(module.text().await.unwrap(), shipped);

    let page = s.get("/demo/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    for path in ["/demo/demo.js", "/demo/demo.css"] {
        assert_eq!(s.get(path).await.status(), 200, "{path}");
    }

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (from, to) in [("/", "/demo/"), ("/demo", "/demo/")] {
        let r = no_redirects.get(s.url(from)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{from}: {}", r.status());
        assert_eq!(r.headers()["location"], to, "{from}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_dir_serves_files_from_disk_and_web_false_turns_them_off() {
    let web = TempDir::new("web");
    let dir = &web.0;
    std::fs::create_dir_all(dir.join("client")).unwrap();
    std::fs::write(
        dir.join("client/switchboard.js"),
        "export const fromDisk = 1;\n",
    )
    .unwrap();
    let s = Server::start(None, &["--web-dir", &dir.display().to_string()]).await;
    let module = s.get("/client/v1/switchboard.js").await;
    assert_eq!(module.text().await.unwrap(), "export const fromDisk = 1;\n");
    // A file missing from the directory is a clear 404, not a panic or an empty 200.
    let missing = s.get("/demo/").await;
    assert_eq!(missing.status(), 404);

    let off = Server::start(None, &["--web", "false"]).await;
    for path in ["/", "/demo/", "/client/v1/switchboard.js"] {
        assert_eq!(off.get(path).await.status(), 404, "{path}");
    }
}
