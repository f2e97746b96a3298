//! Every stager from source through the CLI, each app checked through the router; then every
//! kind of bad package, uploaded as the API receives it, gets a clear message while the app
//! keeps its previous droplet.

use std::io::Write as _;
use std::path::Path;

use nimbus_e2e::{MicroCloud, block_on, get, repo_root, text};

/// Pushes `sample-apps/<dir>` as `name`; returns the push output.
fn push(cloud: &MicroCloud, name: &str, dir: &Path) -> String {
    let push = cloud.nimbus(&["push", name, "-p", dir.to_str().unwrap()]);
    let output = text(&push);
    assert!(
        push.status.success(),
        "push of {} failed:\n{output}\n{}",
        dir.display(),
        cloud.logs()
    );
    output
}

/// POSTs `body` through the router: status and response body.
fn post(url: &str, body: &str) -> (u16, String) {
    block_on(async {
        let response = nimbus_cli::client::http_client()
            .unwrap()
            .post(url)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

#[test]
fn each_language_is_staged_from_source_and_served() {
    let cloud = MicroCloud::start();
    let samples = repo_root().join("sample-apps");

    // name, sample, what the droplet line says, what GET /greet?name=ada answers.
    let apps = [
        ("c", "hello-c", "c wagi", "Hello from C, /greet!"),
        (
            "wagi-rust",
            "hello-wagi-rust",
            "rust wagi",
            "Hello from Rust WAGI, /greet!",
        ),
        (
            "wat",
            "hello-wat",
            "wasm wagi",
            "Hello from WebAssembly text!",
        ),
        (
            "py",
            "hello-python",
            "python http-component",
            "Hello from Python, /greet!",
        ),
        (
            "js",
            "hello-js",
            "javascript http-component",
            "Hello from JavaScript, /greet!",
        ),
    ];
    for (name, sample, droplet, greeting) in apps {
        let output = push(&cloud, name, &samples.join(sample));
        assert!(output.contains(droplet), "{sample}: {output}");
        assert!(
            output.contains("Stored the precompiled droplet"),
            "{sample}: {output}"
        );
        assert!(output.contains("staged in"), "{sample}: {output}");
        let (status, body) = block_on(get(&format!("{}/greet?name=ada", cloud.url(name)))).unwrap();
        assert_eq!(status, 200, "{sample}: {body}");
        assert!(body.contains(greeting), "{sample}: {body}");
    }

    // Request details reach each kind of app: the query, and a POST body.
    let (_, body) = block_on(get(&format!("{}/q?name=ada", cloud.url("c")))).unwrap();
    assert!(body.contains("query: name=ada"), "{body}");
    for (name, echoed) in [
        ("c", "You posted 5 bytes: hello"),
        ("wagi-rust", "You posted 5 bytes: hello"),
        ("py", "You posted 5 bytes: hello"),
        ("js", "You posted 5 bytes: hello"),
    ] {
        let (status, body) = post(&cloud.url(name), "hello");
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.contains(echoed), "{name}: {body}");
    }
    // A WAGI app sets its status with a CGI `Status:` header.
    let (status, body) = block_on(get(&format!("{}/missing", cloud.url("c")))).unwrap();
    assert_eq!((status, body.trim()), (404, "nothing at /missing"));

    // Python and JavaScript start from the stager's precompiled artifact, not by compiling.
    let logs = cloud.logs();
    assert!(
        logs.matches("downloaded precompiled droplet").count() >= 5,
        "{logs}"
    );
    assert!(!logs.contains("compiled droplet sha256"), "{logs}");
}

/// Creates the app `name` through the API.
fn create_app(cloud: &MicroCloud, name: &str) {
    let status = block_on(async {
        nimbus_cli::client::http_client()
            .unwrap()
            .post(format!("{}/v1/apps", cloud.url("api")))
            .bearer_auth(cloud.token())
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 201);
}

/// Uploads `package` as the app's bits and returns the staging failure message.
fn stage_failure(cloud: &MicroCloud, name: &str, package: Vec<u8>) -> String {
    let stream = block_on(async {
        nimbus_cli::client::http_client()
            .unwrap()
            .put(format!("{}/v1/apps/{name}/bits", cloud.url("api")))
            .bearer_auth(cloud.token())
            .body(package)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let last: serde_json::Value = stream
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no staging events: {stream}"));
    last["message"]
        .as_str()
        .unwrap_or_else(|| panic!("staging did not fail: {stream}"))
        .to_string()
}

/// A tar entry written field by field, so that it may hold what `tar::Builder` refuses to
/// write (`..`, absolute paths, links).
fn entry(tar: &mut Vec<u8>, path: &str, kind: u8, link: &str, data: &[u8]) {
    let mut header = [0u8; 512];
    header[..path.len()].copy_from_slice(path.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = kind;
    header[157..157 + link.len()].copy_from_slice(link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    tar.extend_from_slice(&header);
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

fn tar_gz(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (path, kind, link, data) in entries {
        entry(&mut tar, path, *kind, link, data);
    }
    tar.extend_from_slice(&[0; 1024]);
    gzip(&tar)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A small archive whose single file unpacks to `size` zero bytes.
fn bomb(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut header = Vec::new();
    entry(&mut header, "zeros.c", b'0', "", &[]);
    header[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    encoder.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size.div_ceil(zeros.len()) {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn bad_packages_get_clear_messages_and_keep_the_previous_droplet() {
    let cloud = MicroCloud::start();
    let hello_c = repo_root().join("sample-apps/hello-c");
    push(&cloud, "kept", &hello_c);
    let droplet = || {
        let app: serde_json::Value =
            serde_json::from_slice(&cloud.nimbus(&["app", "kept", "--json"]).stdout).unwrap();
        app["app"]["droplet"]["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = droplet();

    const FILE: u8 = b'0';
    const SYMLINK: u8 = b'2';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty archive", tar_gz(&[]), "the package is empty"),
        (
            "parent directory",
            tar_gz(&[("../evil.c", FILE, "", b"int main(){}")]),
            "outside the app directory",
        ),
        (
            "absolute path",
            tar_gz(&[("/tmp/nimbus-evil.c", FILE, "", b"int main(){}")]),
            "outside the app directory",
        ),
        (
            "symlink out",
            tar_gz(&[
                ("etc", SYMLINK, "/etc", b""),
                ("main.c", FILE, "", b"int main(){}"),
            ]),
            "symbolic link",
        ),
        ("archive bomb", bomb(600 << 20), "larger than"),
        (
            "unknown language",
            tar_gz(&[("main.go", FILE, "", b"package main")]),
            "no stager recognises this package",
        ),
        (
            "C compile error",
            tar_gz(&[("main.c", FILE, "", b"int main(void) { return nope; }")]),
            "nope",
        ),
        (
            "Python syntax error",
            tar_gz(&[("app.py", FILE, "", b"def broken(:\n")]),
            "SyntaxError",
        ),
        (
            "JavaScript syntax error",
            tar_gz(&[("app.js", FILE, "", b"addEventListener('fetch', (e) => {;\n")]),
            "syntax error",
        ),
        (
            "wrong kind of component",
            tar_gz(&[("app.wat", FILE, "", b"(component)")]),
            "neither wasi:http/incoming-handler nor wasi:cli/run",
        ),
        (
            "module importing what the DEA lacks",
            tar_gz(&[(
                "app.wat",
                FILE,
                "",
                b"(module (import \"env\" \"secret\" (func)) (func (export \"_start\")))",
            )]),
            "imports `env::secret`",
        ),
    ];
    create_app(&cloud, "bad");
    for (case, package, expected) in cases {
        let message = stage_failure(&cloud, "bad", package);
        assert!(message.contains(expected), "{case}: {message}");
    }
    assert!(!Path::new("/tmp/nimbus-evil.c").exists());

    // A failed build of an app that has a droplet leaves it serving the old one.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("main.c"),
        "int main(void) { return nope; }\n",
    )
    .unwrap();
    let failed = cloud.nimbus(&["push", "kept", "-p", broken.path().to_str().unwrap()]);
    assert!(!failed.status.success());
    let output = text(&failed);
    assert!(output.contains("the C build failed"), "{output}");
    assert!(
        output.contains("nope"),
        "the compiler's error is shown: {output}"
    );
    assert_eq!(droplet(), before);
    let (status, body) = block_on(get(&cloud.url("kept"))).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from C"), "{body}");
}
