//! The systemd unit is valid for systemd itself.

use std::process::Command;

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/mfawatch.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/mfawatch run --config /etc/mfawatch/mfawatch.toml"));
    assert!(unit.contains("LoadCredential=eventhubs-connection-string:"), "the secret arrives as a credential");
    assert!(!unit.contains("CONNECTION_STRING="), "never in the unit");
    let path = dir.path().join("mfawatch.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mfawatch", env!("CARGO_BIN_EXE_mfawatch"))).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    let complaints: Vec<&str> = report.lines().filter(|l| l.contains("mfawatch.service")).collect();
    assert!(complaints.is_empty(), "{report}");
}
