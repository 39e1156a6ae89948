//! The JSON bodies of the API, shared by client and daemon so the two cannot disagree.
//!
//! | request | body | answer |
//! | --- | --- | --- |
//! | `POST /images/load` | [`LoadRequest`] | [`ImageInfo`] |
//! | `GET /images` | | `[ImageInfo]` |
//! | `POST /containers` | [`RunRequest`] | [`ContainerInfo`] (started) |
//! | `GET /containers?all=1` | | `[ContainerInfo]` |
//! | `POST /containers/N/wait` | | [`ContainerInfo`] once exited |
//! | `GET /containers/N/logs` | | the log, as text |
//! | `POST /containers/N/stop` | | [`ContainerInfo`] |
//! | `DELETE /containers/N` | | [`ContainerInfo`] |
//!
//! Every error is a non-2xx status with an [`ErrorBody`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRequest {
    /// Path of the tar on the daemon's machine: client and daemon share a host here.
    pub tar: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    /// The image config's digest, as `docker images` shows it.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    pub cmd: Vec<String>,
}

/// Where a container is in its short life. There is no `created` or `paused`:
/// `run` creates and starts in one step, as `docker run` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub state: State,
    /// The command's exit code; `None` while running, or when the daemon died under it
    /// and nobody was left to see how it ended.
    pub exit_code: Option<i32>,
    /// Why it ended when that is not in the exit code ("the daemon died").
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}
