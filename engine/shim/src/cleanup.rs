//! The `delete` action: containerd cleaning up after a shim that is gone.
//!
//! When containerd finds a bundle whose shim does not answer (it was killed, or the
//! machine rebooted), it runs `containerd-shim-berth-v2 -namespace NS -id ID
//! -bundle BUNDLE delete` and expects, on stdout, a protobuf `DeleteResponse` for the
//! task it then reports as exited. The container may still exist in the runtime (its
//! processes died with the shim, or not): it is force-deleted, and the rootfs and the
//! dead shim's socket are removed.

use std::io::Write;
use std::time::SystemTime;

use protobuf::Message;

use crate::cli::Flags;
use crate::options::{OptionsError, RuntimeOptions};
use crate::protos::api::DeleteResponse;
use crate::reaper::Reaper;
use crate::rootfs;
use crate::runtime::Runtime;
use crate::start::ADDRESS_FILE;
use crate::task::INIT_PID_FILE;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot read the bundle directory (the working directory): {0}")]
    Bundle(std::io::Error),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("cannot write the DeleteResponse to stdout: {0}")]
    Output(String),
}

pub fn run(flags: &Flags) -> Result<(), CleanupError> {
    let bundle = match &flags.bundle {
        Some(bundle) => bundle.clone(),
        None => std::env::current_dir().map_err(CleanupError::Bundle)?,
    };
    // Read before the runtime's delete: the pid the container's init had, for the
    // exit containerd publishes from this response.
    let pid = std::fs::read_to_string(bundle.join(INIT_PID_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    let options = RuntimeOptions::load(&bundle)?;
    match Runtime::new(options, &bundle, &flags.namespace) {
        Ok(runtime) => {
            if let Err(e) = runtime.delete(&Reaper::direct(), &flags.id, true) {
                if !e.is_not_found() {
                    eprintln!("berth-shim: deleting {} in the runtime: {e}", flags.id);
                }
            }
        }
        // Nothing to delete with; the rest of the cleanup still helps.
        Err(e) => eprintln!("berth-shim: {e}"),
    }
    rootfs::unmount_all(&bundle);
    if let Ok(address) = std::fs::read_to_string(bundle.join(ADDRESS_FILE)) {
        let _ = std::fs::remove_file(address.trim().trim_start_matches("unix://"));
    }

    let mut response = DeleteResponse::new();
    response.pid = pid.unwrap_or_default();
    // The processes died with their shim, or just now: as if SIGKILLed.
    response.exit_status = 128 + 9;
    response.exited_at = Some(crate::events::timestamp(SystemTime::now())).into();
    let bytes = response
        .write_to_bytes()
        .map_err(|e| CleanupError::Output(e.to_string()))?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| CleanupError::Output(e.to_string()))?;
    Ok(())
}
