//! Staging Rust source with cargo over a real nats-server.

mod common;

use common::{TestCloud, hello_rust_source, tar_gz};
use nimbus_protocol::droplet::droplet_object_name;
use uuid::Uuid;

#[tokio::test]
async fn builds_a_rust_crate_and_restages_it_from_the_cache() {
    let cloud = TestCloud::start().await;
    let app_id = Uuid::new_v4();
    let source = hello_rust_source();

    let first = cloud.stage(app_id, &source).await;
    let droplet = first.droplet().clone();
    assert_eq!(droplet.language, "rust");
    assert!(
        cloud
            .has_object(&droplet_object_name(&droplet.sha256))
            .await
    );
    let log = first.lines.join("\n");
    assert!(log.contains("-----> Rust app detected"), "{log}");
    assert!(log.contains("Compiling hello-rust"), "{log}");
    assert!(log.contains("-----> Build finished in"), "{log}");
    assert!(log.contains(&droplet.sha256), "{log}");
    assert!(
        first
            .app_log
            .iter()
            .any(|line| line.source == "STG" && line.message.contains("Rust app detected")),
        "the app's log stream got no staging lines"
    );

    // Restaging reuses the app's build cache: dependencies are not compiled again.
    let second = cloud.stage(app_id, &source).await;
    assert_eq!(second.droplet().language, "rust");
    let log = second.lines.join("\n");
    assert!(!log.contains("Compiling wasip2"), "{log}");
    assert!(log.contains("Compiling hello-rust"), "{log}");
    cloud.shutdown().await;
}

#[tokio::test]
async fn reports_the_compiler_errors_of_a_broken_crate() {
    let cloud = TestCloud::start().await;
    let cargo_toml = "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                      [lib]\ncrate-type = [\"cdylib\"]\n";
    let lib_rs = "pub fn answer() -> u32 {\n    \"forty-two\"\n}\n";
    let package = tar_gz(&[("Cargo.toml", cargo_toml), ("src/lib.rs", lib_rs)]);

    let staging = cloud.stage(Uuid::new_v4(), &package).await;
    let message = staging.failure();
    assert!(message.contains("the Rust build failed"), "{message}");
    assert!(message.contains("error[E0308]"), "{message}");
    assert!(message.contains("mismatched types"), "{message}");
    assert!(
        staging.lines.iter().any(|l| l.contains("error[E0308]")),
        "{:?}",
        staging.lines
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn runs_build_scripts_as_the_unprivileged_build_user() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return; // a stager that is not root builds as itself
    }
    let cloud = TestCloud::start().await;
    let cargo_toml = "[package]\nname = \"escape\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                      [lib]\ncrate-type = [\"cdylib\"]\n";
    // A build script runs whatever its author wants, as whoever runs the build.
    let build_rs = r#"fn main() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uid = uid.split_whitespace().nth(1).unwrap();
    let wrote = std::fs::write("/root/nimbus-build-escape", b"owned").is_ok();
    println!("cargo:warning=build script uid={uid} wrote_root={wrote}");
}
"#;
    let package = tar_gz(&[
        ("Cargo.toml", cargo_toml),
        ("build.rs", build_rs),
        ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n"),
    ]);
    let staging = cloud.stage(Uuid::new_v4(), &package).await;
    let log = staging.lines.join("\n");
    let line = log
        .lines()
        .find(|line| line.contains("build script uid="))
        .unwrap_or_else(|| panic!("the build script's warning is missing: {log}"));
    assert!(!line.contains("uid=0 "), "{line}");
    assert!(line.contains("wrote_root=false"), "{line}");
    assert!(!std::path::Path::new("/root/nimbus-build-escape").exists());
    cloud.shutdown().await;
}
