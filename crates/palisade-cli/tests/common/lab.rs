//! Whether lab tests run here (root; PALISADE_SKIP_LAB unset), and one lab at a time.

fn lab_possible() -> bool {
    if std::env::var_os("PALISADE_SKIP_LAB").is_some() {
        eprintln!("PALISADE_SKIP_LAB is set: lab tests skipped");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    assert!(root, "the lab tests need root (network namespaces, nftables); run as root or set PALISADE_SKIP_LAB=1");
    true
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// One lab at a time: they share the machine's namespace list and its two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `None` when lab tests are skipped; otherwise the lock that runs labs one at a time.
pub fn lab_slot() -> Option<std::sync::MutexGuard<'static, ()>> {
    lab_possible().then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}
