use std::collections::BTreeMap;

use super::recorder::Mask;
use super::*;
use crate::store::testutil;

fn record(id: &str, result: BuildResult) -> BuildRecord {
    BuildRecord {
        id: id.to_string(),
        started_ms: 1_767_225_600_123,
        duration_ms: Some(1234),
        result,
        context: "/src/app".into(),
        dockerfile: "Dockerfile".into(),
        target: Some("build".into()),
        platform: "linux/amd64".into(),
        tags: vec!["app:1".into()],
        build_args: vec!["VERSION".into()],
        no_cache: false,
        image: Some(Digest::of(b"config")),
        manifest: Some(Digest::of(b"manifest")),
        error: Some(RecordedError { message: "boom".into(), line: Some(3), column: Some(1) }),
        steps: vec![
            StepRecord {
                name: "[build 2/3] COPY . /src".into(),
                stage: "build".into(),
                started_ms: 1_767_225_600_200,
                duration_ms: Some(5),
                cache: Some(CacheStatus::Hit { from: None }),
                bytes: Some(2048),
                result: StepResult::Done,
                exit: None,
                error: None,
                last_lines: Vec::new(),
                log: None,
            },
            StepRecord {
                name: "[build 3/3] RUN make".into(),
                stage: "build".into(),
                started_ms: 1_767_225_600_300,
                duration_ms: Some(900),
                cache: Some(CacheStatus::Miss { reason: "previous step changed".into() }),
                bytes: None,
                result: StepResult::Failed,
                exit: Some(ExitStatus::Exited(2)),
                error: Some("process \"/bin/sh -c make\" did not complete successfully: exit code 2".into()),
                last_lines: vec!["make: *** [all] Error 1".into()],
                log: Some("003-build-02.log".into()),
            },
        ],
    }
}

/// Writes `record` as build `id`'s record file (and creates its directory).
fn put(store: &Store, r: &BuildRecord) -> PathBuf {
    let dir = build_dir(store, &r.id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(RECORD_FILE), serde_json::to_vec(&json::encode(r)).unwrap()).unwrap();
    dir
}

#[test]
fn a_record_reads_back_as_written() {
    let r = record("1767225600-000000001-42", BuildResult::Failed);
    let path = Path::new("record.json");
    let bytes = serde_json::to_vec(&json::encode(&r)).unwrap();
    assert_eq!(json::decode(path, &bytes).unwrap(), r);
    let value = json::encode(&r);
    assert_eq!(
        (value["v"].as_u64(), value["steps_run"].as_u64(), value["steps_cached"].as_u64()),
        (Some(1), Some(0), Some(1))
    );
    assert_eq!(value["steps"][1]["exit_code"], 2);
    assert!(value["steps"][1]["signal"].is_null());
}

#[test]
fn unknown_fields_are_ignored_and_bad_ones_named() {
    let r = record("1767225600-000000001-42", BuildResult::Succeeded);
    let path = Path::new("record.json");
    let mut value = json::encode(&r);
    value["added_later"] = serde_json::json!({"x": 1});
    assert_eq!(json::decode(path, &serde_json::to_vec(&value).unwrap()).unwrap(), r);
    value["steps"][0]["result"] = serde_json::json!("exploded");
    let err = json::decode(path, &serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(matches!(&err, RecordError::Field { field, .. } if field == "steps.result"), "{err}");
    value["v"] = serde_json::json!(2);
    assert!(matches!(
        json::decode(path, &serde_json::to_vec(&value).unwrap()),
        Err(RecordError::Version { found: 2, .. })
    ));
    let mut escape = json::encode(&r);
    escape["steps"][0]["log"] = serde_json::json!("../../etc/passwd");
    assert!(matches!(json::decode(path, &serde_json::to_vec(&escape).unwrap()), Err(RecordError::Field { .. })));
    assert!(matches!(json::decode(path, b"{\"v\":1,"), Err(RecordError::Parse { .. })));
}

#[test]
fn values_are_masked_whole_longest_first_in_one_pass() {
    let args: BTreeMap<String, String> =
        [("TOKEN", "tok-123"), ("LONGER", "tok-123-extra"), ("SELF", "TOKEN"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let mask = Mask::new(&args);
    assert_eq!(mask.apply("COPY tok-123-extra/tok-123 /x"), "COPY ${LONGER}/${TOKEN} /x");
    // What was put in is not masked again (`${TOKEN}` holds the value `TOKEN`).
    assert_eq!(mask.apply("TOKEN=tok-123"), "${SELF}=${TOKEN}");
    assert_eq!(mask.apply("nothing here"), "nothing here");
    assert_eq!(Mask::new(&BTreeMap::new()).apply("as is"), "as is");
}

#[test]
fn ids_resolve_exactly_or_by_a_unique_prefix() {
    let (_dir, store) = testutil::store();
    for id in ["1767225600-000000001-42", "1767225600-000000002-42", "1767225700-000000001-43"] {
        put(&store, &record(id, BuildResult::Succeeded));
    }
    assert_eq!(resolve(&store, "1767225700").unwrap(), "1767225700-000000001-43");
    assert_eq!(resolve(&store, "1767225600-000000002-42").unwrap(), "1767225600-000000002-42");
    let err = resolve(&store, "1767225600-").unwrap_err();
    assert!(matches!(&err, RecordError::Ambiguous { matches, .. } if matches.len() == 2), "{err}");
    assert!(matches!(resolve(&store, "9"), Err(RecordError::NotFound { .. })));
    assert!(matches!(resolve(&store, ""), Err(RecordError::NotFound { .. })));
    assert!(matches!(resolve(&store, ".."), Err(RecordError::NotFound { .. })));
    for outside in ["..", "../logs", ".lock", ""] {
        assert!(matches!(remove(&store, outside), Err(RecordError::NotFound { .. })), "{outside}");
        assert!(matches!(load(&store, outside), Err(RecordError::NotFound { .. })), "{outside}");
    }
    assert_eq!(find(&store, "17672257").unwrap().id, "1767225700-000000001-43");
}

#[test]
fn list_is_newest_first_and_passes_over_what_it_cannot_read() {
    let (_dir, store) = testutil::store();
    put(&store, &record("1767225600-000000001-42", BuildResult::Succeeded));
    put(&store, &record("1767225800-000000001-44", BuildResult::Failed));
    // A torn file (no writer leaves one: the test does), logs without a record, a stray file.
    let torn = build_dir(&store, "1767225700-000000001-43");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join(RECORD_FILE), b"{\"v\":1,\"id\":").unwrap();
    std::fs::create_dir_all(build_dir(&store, "1767225500-000000001-41")).unwrap();
    std::fs::write(logs_dir(&store).join("stray"), b"").unwrap();
    let ids: Vec<String> = list(&store).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["1767225800-000000001-44", "1767225600-000000001-42"]);
    assert!(matches!(find(&store, "1767225500"), Err(RecordError::NoRecord { .. })));
    assert!(matches!(find(&store, "1767225700"), Err(RecordError::Parse { .. })));
}

#[test]
fn a_running_record_nobody_holds_reads_as_interrupted() {
    let (_dir, store) = testutil::store();
    let mut r = record("1767225600-000000001-42", BuildResult::Running);
    r.steps[1].result = StepResult::Running;
    let dir = put(&store, &r);
    let held = File::open(&dir).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let running = find(&store, &r.id).unwrap();
    assert_eq!((running.result, running.steps[1].result), (BuildResult::Running, StepResult::Running));
    assert!(matches!(remove(&store, &r.id), Err(RecordError::Running { .. })));
    assert_eq!(remove_all(&store).unwrap(), Removed { removed: vec![], running: vec![r.id.clone()] });
    drop(held);
    let killed = find(&store, &r.id).unwrap();
    assert_eq!((killed.result, killed.steps[1].result), (BuildResult::Interrupted, StepResult::Interrupted));
    assert_eq!(killed.steps[0].result, StepResult::Done, "a finished step stays as it ended");
    remove(&store, &r.id).unwrap();
    assert!(!dir.exists());
    assert!(list(&store).unwrap().is_empty());
}

#[test]
fn the_log_path_is_the_named_file_of_the_builds_directory() {
    let (_dir, store) = testutil::store();
    let r = record("1767225600-000000001-42", BuildResult::Failed);
    assert_eq!(r.log_path(&store, 1), None, "a COPY has no log");
    assert_eq!(r.log_path(&store, 2), Some(build_dir(&store, &r.id).join("003-build-02.log")));
    assert_eq!(r.log_path(&store, 0), None);
    assert_eq!(r.log_path(&store, 3), None);
}
