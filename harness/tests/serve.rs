//! `schism serve`: the list of runs with verdicts, each run's files, nothing outside the store.

mod common;

use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn lists_runs_serves_their_files_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let run = common::write_run(root.path(), false);
    let results = schism::check::check_run(&run).unwrap();
    run.write_results(&results).unwrap();
    schism::report::write_for_run(&run, &results).unwrap();
    std::fs::write(root.path().join("outside.txt"), "secret").unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(schism::serve::serve(
        root.path().to_path_buf(),
        listener,
        cancel.clone(),
    ));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    let name = run.path.file_name().unwrap().to_string_lossy().into_owned();
    let (status, index) = get("/".into()).await;
    assert_eq!(status, 200);
    assert!(index.contains(&name), "the run is listed");
    assert!(index.contains("class=\"valid\""), "with its verdict");

    let (status, report) = get(format!("/runs/register/{name}/report.html")).await;
    assert_eq!(status, 200);
    assert!(report.contains(r#"data-verdict="valid""#));
    let (status, files) = get(format!("/runs/register/{name}/")).await;
    assert_eq!(status, 200);
    assert!(files.contains("history.jsonl") && files.contains("results.json"));

    for escape in [
        format!("/runs/register/{name}/..%2F..%2Foutside.txt"),
        format!("/runs/register/{name}/../../outside.txt"),
        "/runs/../outside.txt/x".to_string(),
    ] {
        let (status, body) = get(escape.clone()).await;
        assert!(
            !body.contains("secret"),
            "{escape} leaked a file outside the store"
        );
        assert_ne!(status, 200, "{escape}");
    }
    cancel.cancel();
    server.await.unwrap().unwrap();
}
