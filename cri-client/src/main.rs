//! `cri-client SOCKET HANDLER IMAGE LOG_DIR`: drive a CRI runtime service
//! (containerd's CRI plugin, as kubelet does) through one pod's life with the
//! RuntimeClass handler HANDLER: RunPodSandbox, CreateContainer and
//! StartContainer for IMAGE running `sleep 1000`, ExecSync, StopContainer,
//! RemoveContainer, StopPodSandbox and RemovePodSandbox. Prints one line per
//! call (`NAME ok`, `NAME error CODE MESSAGE`, and ExecSync's exit code and
//! output) so a test can compare handlers line by line. Exits 1 at the first
//! failed call, after trying to remove what it made.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// The longest one call may take; a hang (upstream runsc's StartContainer
/// never returns) becomes a clear failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

type Client = RuntimeServiceClient<Channel>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, handler, image, log_dir] = args.as_slice() else {
        eprintln!("usage: cri-client SOCKET HANDLER IMAGE LOG_DIR");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let ok = rt.block_on(pod_life(socket, handler, image, log_dir));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn connect(socket: &str) -> Result<Client, tonic::transport::Error> {
    let path = socket.to_string();
    // The URI is required by the API but unused: the connector dials the
    // unix socket.
    let channel = Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(RuntimeServiceClient::new(channel))
}

/// Bound one call by [`CALL_TIMEOUT`].
fn t<F: std::future::IntoFuture>(f: F) -> tokio::time::Timeout<F::IntoFuture> {
    tokio::time::timeout(CALL_TIMEOUT, f)
}

/// Print a call's outcome; `Some(value)` when it succeeded.
fn report<T>(
    name: &str,
    r: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
) -> Option<T> {
    match r {
        Ok(Ok(resp)) => {
            println!("{name} ok");
            Some(resp.into_inner())
        }
        Ok(Err(status)) => {
            println!("{name} error {:?} {}", status.code(), status.message());
            None
        }
        Err(_) => {
            println!("{name} error timed out after {CALL_TIMEOUT:?}");
            None
        }
    }
}

async fn pod_life(socket: &str, handler: &str, image: &str, log_dir: &str) -> bool {
    let mut c = match connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            println!("connect error {e}");
            return false;
        }
    };
    // Host network (no CNI here) and no hostname: a pod without its own UTS
    // namespace may not set one.
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("pod-{handler}"),
            uid: format!("uid-{handler}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: log_dir.into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let Some(pod) = report(
        "RunPodSandbox",
        t(c.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.into(),
        }))
        .await,
    ) else {
        return false;
    };
    let pod_id = pod.pod_sandbox_id;
    let mut ok = false;
    let created = report(
        "CreateContainer",
        t(c.create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "sleeper".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "1000".into()],
                log_path: "sleeper.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config),
        }))
        .await,
    );
    if let Some(created) = created {
        let id = created.container_id;
        let started = report(
            "StartContainer",
            t(c.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .await,
        );
        if started.is_some() {
            let exec = report(
                "ExecSync",
                t(c.exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["sh".into(), "-c".into(), "echo exec-ok; exit 3".into()],
                    timeout: 30,
                }))
                .await,
            );
            if let Some(e) = exec {
                println!(
                    "ExecSync exit={} stdout={:?}",
                    e.exit_code,
                    String::from_utf8_lossy(&e.stdout)
                );
                ok = true;
            }
            ok &= report(
                "StopContainer",
                t(c.stop_container(StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 1,
                }))
                .await,
            )
            .is_some();
        }
        ok &= report(
            "RemoveContainer",
            t(c.remove_container(RemoveContainerRequest { container_id: id })).await,
        )
        .is_some();
    }
    ok &= report(
        "StopPodSandbox",
        t(c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        }))
        .await,
    )
    .is_some();
    ok &= report(
        "RemovePodSandbox",
        t(c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        }))
        .await,
    )
    .is_some();
    ok
}
