//! `shop serve <service>` hands over to the service's own binary, `shop-<service>`, when that
//! binary is beside `shop` and of the same build; alone (as `cargo run` leaves it) or beside a
//! binary of another build, `shop` serves the service itself.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One `<shop> serve logging` process, its HTTP port and what it printed.
struct Served {
    child: Child,
    port: u16,
    output: PathBuf,
    _data: tempfile::TempDir,
}

impl Served {
    /// Starts `shop serve logging` from the binary `shop` and waits until it answers /healthz.
    /// It needs no broker for that.
    async fn start(shop: &Path) -> Served {
        let data = tempfile::tempdir().unwrap();
        let port = shop_platform::ports::unused_one().unwrap();
        let output = data.path().join("output.log");
        let log = std::fs::File::create(&output).unwrap();
        let child = support::logging_with_no_broker(shop, port, data.path())
            .args(["--instance-id", "logging-binaries"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let served = Served { child, port, output, _data: data };
        support::until_alive(served.port).await;
        served
    }

    /// The binary the process runs now.
    fn exe(&self) -> PathBuf {
        std::fs::read_link(format!("/proc/{}/exe", self.child.id())).unwrap()
    }

    /// Kills it (how a service stops is tests/shutdown.rs's matter); what it printed.
    fn stop(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::fs::read_to_string(&self.output).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder of this test's own, in the target folder (so that a hard link to the built `shop`
/// can be made in it), holding `shop` alone.
fn shop_alone() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shop = dir.path().join("shop");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_shop"), &shop).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_shop"), &shop).unwrap();
    }
    (dir, shop)
}

#[tokio::test]
async fn serve_hands_over_to_the_services_own_binary_beside_shop() {
    let served = Served::start(Path::new(env!("CARGO_BIN_EXE_shop"))).await;
    assert_eq!(served.exe(), PathBuf::from(env!("CARGO_BIN_EXE_shop-logging")), "the process runs shop-logging");
    let output = served.stop();
    assert!(!output.contains("serving logging from this binary"), "it said nothing of another build: {output}");
}

#[tokio::test]
async fn shop_alone_serves_the_service_itself() {
    let (_dir, shop) = shop_alone();
    let served = Served::start(&shop).await;
    assert_eq!(served.exe(), shop, "the process still runs shop");
    served.stop();
}

#[tokio::test]
async fn a_service_binary_of_another_build_is_left_unused() {
    let (dir, shop) = shop_alone();
    // What `shop-logging --build-id` of an older build answers: another name.
    let older = dir.path().join("shop-logging");
    std::fs::write(&older, "#!/bin/sh\necho 0000000000000000\n").unwrap();
    std::fs::set_permissions(&older, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let served = Served::start(&shop).await;
    assert_eq!(served.exe(), shop, "the process still runs shop");
    let output = served.stop();
    assert!(
        output.contains(&format!("{} is of another build; serving logging from this binary", older.display())),
        "it says why it did not hand over: {output}"
    );
}

#[test]
fn every_service_binary_names_the_build_of_shop() {
    for service in ["order", "payment", "delivery", "notification", "logging", "mobile", "email"] {
        let binary = Path::new(env!("CARGO_BIN_EXE_shop")).with_file_name(format!("shop-{service}"));
        let answer = Command::new(&binary).arg("--build-id").output().unwrap();
        assert!(answer.status.success(), "shop-{service}: {answer:?}");
        assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), shop::serve::BUILD_ID, "shop-{service}");
    }
}
