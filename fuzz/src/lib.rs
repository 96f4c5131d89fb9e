//! What the fuzz targets share.

/// Removes `/dev/shm/{prefix}PID` segments whose process no longer exists:
/// a fuzz run that crashes in the middle of an input leaves its segment
/// behind (libFuzzer exits without running destructors).
pub fn remove_leftovers(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
