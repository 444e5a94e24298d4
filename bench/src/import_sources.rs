//! What the seed and pull contenders of the import benchmark read, made
//! once before the rounds and outside every timed window: an export of the
//! benchmark image (`skiff store export`) and a local `docker-registry`
//! holding it (pushed with `skopeo copy`), on loopback, plain HTTP.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::ImageInfo;
use crate::tools::run_checked;

/// The repository the benchmark image is pushed as.
const REPO: &str = "bench/image:1";

fn failed(image: &ImageInfo, detail: String) -> Error {
    Error::Image {
        path: image.archive.clone(),
        detail,
    }
}

/// Import the image into a store under `dir`, export it to `dir/export.skiff`.
pub(crate) fn export(image: &ImageInfo, dir: &Path) -> Result<PathBuf> {
    let store = imagestore::Store::open(dir.join("export-store"))
        .map_err(|e| failed(image, format!("opening a store to export from: {e}")))?;
    let report = store
        .import(
            &imagestore::Input::Path(image.archive.clone()),
            &imagestore::ImportOptions::default(),
        )
        .map_err(|e| failed(image, format!("importing it to export: {e}")))?;
    let ids: Vec<String> = report.images.iter().map(|i| i.id.to_string()).collect();
    let path = dir.join("export.skiff");
    let file = std::fs::File::create(&path)
        .map_err(|e| failed(image, format!("creating {}: {e}", path.display())))?;
    store
        .export(&ids, std::io::BufWriter::new(file))
        .map_err(|e| failed(image, format!("exporting it: {e}")))?;
    Ok(path)
}

/// A `docker-registry` on loopback holding the image; killed on drop.
#[derive(Debug)]
pub(crate) struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT/bench/image:1`.
    pub reference: String,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a registry with its data under `dir` and push the image to it.
pub(crate) fn registry(image: &ImageInfo, dir: &Path) -> Result<LocalRegistry> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(image, format!("finding a free port: {e}")))?;
    let data = dir.join("registry");
    std::fs::create_dir_all(&data)
        .map_err(|e| failed(image, format!("creating {}: {e}", data.display())))?;
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        ),
    )
    .map_err(|e| failed(image, format!("writing {}: {e}", config.display())))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(image, format!("starting docker-registry: {e}")))?;
    let reg = LocalRegistry {
        child,
        reference: format!("127.0.0.1:{port}/{REPO}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(failed(
                image,
                "docker-registry did not start listening".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut push = Command::new("skopeo");
    push.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", image.archive.display()))
        .arg(format!("docker://{}", reg.reference));
    run_checked(&mut push).map_err(|e| failed(image, format!("pushing it: {e}")))?;
    Ok(reg)
}
