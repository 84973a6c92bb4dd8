//! Clear errors for what an operator gets wrong, on real mongods: one sentence naming the side,
//! what is wrong and what to do; no driver dump, no password; and found before anything is
//! copied.

use mongodb::bson::{Document, doc};

use crate::common::{Cmd, Run, atlas_uri};
use crate::migrate::{secrets, setup};
use crate::mongod::{self, Mongod, SOURCE_PASSWORD, TARGET_PASSWORD, block, client};

const WRONG: &str = "Wr0ng-Passw0rd";
const OTHER: &str = "0ther-Passw0rd";

fn copy(source: &str, target: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    Cmd::copy(source, target)
        .journal(dir.path().join("j.json"))
        .run()
}

/// One clear sentence: the words expected, no password, no driver internals.
fn assert_clear(r: &Run, code: i32, words: &[&str]) {
    assert_eq!(r.code, code, "{}", r.stderr);
    for w in words {
        assert!(r.stderr.contains(w), "{w:?} missing from:\n{}", r.stderr);
    }
    r.assert_no_secret(&[SOURCE_PASSWORD, TARGET_PASSWORD, WRONG, OTHER]);
    for dump in [
        "Topology",
        "labels:",
        "Kind:",
        "server response",
        "panicked",
    ] {
        assert!(
            !r.stderr.contains(dump),
            "driver dump {dump:?} in:\n{}",
            r.stderr
        );
    }
    let error_lines = r.stderr.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(error_lines, 1, "{}", r.stderr);
}

async fn seeded() -> (Mongod, Mongod) {
    let (src, dst) = (Mongod::source(), Mongod::target());
    client(&src.uri())
        .await
        .database("shop")
        .collection::<Document>("items")
        .insert_many((0..10).map(|i| doc! {"_id": i, "n": i}))
        .await
        .unwrap();
    (src, dst)
}

/// Nothing reached the target's user databases.
async fn target_untouched(dst: &Mongod) {
    let names = client(&dst.admin_uri())
        .await
        .list_database_names()
        .await
        .unwrap();
    assert!(
        names
            .iter()
            .all(|d| ["admin", "local", "config"].contains(&d.as_str())),
        "{names:?}"
    );
}

#[tokio::test]
async fn wrong_passwords_name_the_side_and_the_flag() {
    let (src, dst) = seeded().await;
    let r = copy(&src.uri_as("root", WRONG), &dst.uri());
    assert_clear(
        &r,
        1,
        &["source", "rejected the login of user root", "--source-uri"],
    );
    let r = copy(&src.uri(), &dst.uri_as("atlas_app", WRONG));
    assert_clear(
        &r,
        1,
        &[
            "target",
            "rejected the login of user atlas_app",
            "--target-uri",
        ],
    );
    target_untouched(&dst).await;
}

#[tokio::test]
async fn a_target_user_that_cannot_write_or_index_is_found_before_any_copy() {
    let (src, dst) = seeded().await;
    dst.add_user("reader", OTHER, &["readAnyDatabase"]);
    let r = copy(&src.uri(), &dst.uri_as("reader", OTHER));
    assert_clear(
        &r,
        3,
        &[
            "target user reader may not",
            "in database shop",
            "readWriteAnyDatabase",
        ],
    );
    target_untouched(&dst).await;

    // Writes, but may not build indexes.
    let admin = dst.admin_uri();
    block(async move {
        client(&admin)
            .await
            .database("admin")
            .run_command(doc! {"createRole": "writeNoIndex", "roles": [], "privileges": [
                {"resource": {"db": "", "collection": ""},
                 "actions": ["find", "insert", "createCollection", "dropCollection", "listCollections", "bypassDocumentValidation"]}
            ]})
            .await
            .unwrap();
    });
    dst.add_user("writer", OTHER, &["writeNoIndex"]);
    let r = copy(&src.uri(), &dst.uri_as("writer", OTHER));
    assert_clear(
        &r,
        3,
        &["target user writer may not create indexes in database shop"],
    );
    target_untouched(&dst).await;
}

#[tokio::test]
async fn tls_mistakes_say_what_to_add_to_the_uri() {
    let (src, dst) = seeded().await;
    let ca = format!("&tlsCAFile={}", mongod::ca_file());
    // TLS asked for, but the private CA is not given: the certificate is untrusted.
    let untrusted = dst.uri().replace(&ca, "");
    let r = copy(&src.uri(), &untrusted);
    assert_clear(&r, 1, &["target", "UnknownIssuer", "tlsCAFile="]);
    // TLS required by the server, not asked for.
    let plain = dst.uri().replace(&format!("&tls=true{ca}"), "");
    assert!(!plain.contains("tls"), "{plain}");
    let r = copy(&src.uri(), &plain);
    assert_clear(&r, 1, &["target", "requires TLS", "tls=true"]);
    target_untouched(&dst).await;
}

#[tokio::test]
async fn an_unreachable_host_is_named_with_the_way_in() {
    let (_src, dst) = seeded().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = copy(
        &format!("mongodb://root:{SOURCE_PASSWORD}@127.0.0.1:{port}/?authSource=admin"),
        &dst.uri(),
    );
    assert_clear(
        &r,
        1,
        &[
            "source",
            &format!("127.0.0.1:{port}"),
            "connection refused",
            "tunnel",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_user_that_cannot_freeze_is_refused_in_preflight_naming_the_role() {
    let s = setup(0).await;
    s.src.add_user("app", OTHER, &["readAnyDatabase"]);
    let mut a = s.args();
    let i = a.iter().position(|x| x == "--source-uri").unwrap();
    a[i + 1] = s.src.uri_as("app", OTHER);
    a.push("--yes".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let uri = atlas_uri();
    let r = tokio::task::block_in_place(|| s.acct.run_env(&a, &[("EFS2ATLAS_ATLAS_URI", &uri)]));
    assert_clear(
        &r,
        3,
        &[
            "source user app may not freeze writes",
            "fsync",
            "hostManager",
            "--freeze none",
        ],
    );
    r.assert_no_secret(&secrets());
    assert_eq!(
        s.journal_json()["migrate"]["steps"]["preflight"]["status"],
        "failed"
    );
    assert!(
        s.journal_json()["copy"]["collections"]
            .as_object()
            .is_none_or(|c| c.is_empty())
    );
    target_untouched(&s.dst).await;
}

/// A run killed during the preflight's write check leaves its scratch collection behind (found
/// by the chaos test): the next check drops it, and verify and sync never count one as the
/// app's.
#[tokio::test]
async fn a_scratch_collection_left_by_a_killed_preflight_is_dropped_and_never_counted() {
    let (src, dst) = seeded().await;
    let t = client(&dst.uri()).await;
    t.database("shop")
        .run_command(doc! {"create": "efs2atlas_preflight_dead"})
        .await
        .unwrap();
    let r = copy(&src.uri(), &dst.uri());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names = t.database("shop").list_collection_names().await.unwrap();
    assert_eq!(names, ["items"], "the leftover is gone");
    // One left after the copy (a killed later check) is not the app's either.
    t.database("shop")
        .run_command(doc! {"create": "efs2atlas_preflight_dead2"})
        .await
        .unwrap();
    for cmd in ["verify", "sync"] {
        let dir = tempfile::tempdir().unwrap();
        let r = Cmd::new(&[cmd, "--source-uri", &src.uri(), "--target-uri", &dst.uri()])
            .json()
            .dir(dir.path())
            .run();
        assert_eq!(r.code, 0, "{cmd}: {}\n{}", r.stdout, r.stderr);
    }
}

/// A `mongo` container older than the driver supports (MongoDB 4.0, wire version 7): a real
/// 4.4 server whose `hello` says 7 (no 4.0 server is obtainable here). One sentence naming the
/// version and what to do, before anything is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_older_than_4_2_is_named_with_its_version_and_the_way_out() {
    let (src, dst) =
        tokio::task::block_in_place(|| (Mongod::source_version("4.4"), Mongod::target()));
    let proxy = crate::tcpfault::TcpFault::start(src.port());
    let field = |v: u8| {
        let mut b = b"\x10maxWireVersion\x00".to_vec();
        b.extend_from_slice(&[v, 0, 0, 0]);
        b
    };
    proxy.set(crate::tcpfault::Faults {
        rewrite_down: Some((field(9), field(7))),
        ..Default::default()
    });
    let r = copy(&src.uri_via(proxy.port), &dst.uri());
    assert_clear(
        &r,
        1,
        &[
            "source",
            "runs MongoDB 4.0 (wire version 7)",
            "needs MongoDB 4.2 or newer",
            "mongo:4.2",
        ],
    );
    let target = client(&dst.uri()).await;
    assert!(
        target
            .list_database_names()
            .await
            .unwrap()
            .iter()
            .all(|d| ["admin", "local", "config"].contains(&d.as_str())),
        "nothing was copied"
    );
}
