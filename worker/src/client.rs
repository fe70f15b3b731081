//! The worker's side of the gRPC protocol: a lazily connected channel with the run token on
//! every call, and retries while the coordinator is unreachable (it may be restarting).

use std::time::{Duration, Instant};

use common::proto::coordinator_client::CoordinatorClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub(crate) struct TokenAuth {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl Interceptor for TokenAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.header.clone());
        Ok(req)
    }
}

pub(crate) type Client = CoordinatorClient<InterceptedService<Channel, TokenAuth>>;

/// A client for `address` (e.g. `http://127.0.0.1:7000`).
pub(crate) fn connect(address: &str, token: &str) -> anyhow::Result<Client> {
    let endpoint = Endpoint::from_shared(address.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    let header = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("the run token is not valid ASCII"))?;
    Ok(CoordinatorClient::with_interceptor(endpoint.connect_lazy(), TokenAuth { header }))
}

/// Whether an RPC error means "coordinator not reachable right now" (retry) rather than a
/// refusal (give up).
pub(crate) fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

/// Calls `f` until it succeeds, the error is not transient, or `patience` runs out.
pub(crate) async fn with_retry<T, F, Fut>(patience: Duration, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    with_retry_until(patience, || false, f).await
}

/// [`with_retry`], but gives up early, with the last error, once `stop()` says there is no
/// point waiting (the run has ended, or the coordinator that started this worker is gone).
pub(crate) async fn with_retry_until<T, F, Fut>(
    patience: Duration,
    stop: impl Fn() -> bool,
    mut f: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s) if is_transient(&s) && start.elapsed() < patience && !stop() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(s),
        }
    }
}
