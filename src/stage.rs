//! One way to write a pipeline stage: an async function around the rest of the stack.
//!
//! Inspection, policy and list filtering each need the request before and the answer
//! after the stages below them. Each implements [`PipelineStage`]; [`StageLayer`] makes it a
//! `tower::Layer`, so the tower plumbing (readiness, the ready clone) is written once.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::Rejection;

pub type StageFuture = BoxFuture<'static, Result<Response<Body>, Rejection>>;

/// The rest of the stack below a stage.
pub type Next = BoxCloneSyncService<Request<Body>, Response<Body>, Rejection>;

pub trait PipelineStage: Clone + Send + Sync + 'static {
    /// Handles `req`, calling `next` to continue down the stack (or not, to refuse).
    fn call(&self, req: Request<Body>, next: Next) -> StageFuture;
}

/// Makes a [`PipelineStage`] a `tower::Layer`.
#[derive(Clone)]
pub struct StageLayer<T>(pub T);

impl<T, S> Layer<S> for StageLayer<T>
where
    T: PipelineStage,
    S: Service<Request<Body>, Response = Response<Body>, Error = Rejection> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Service = StageService<T>;
    fn layer(&self, inner: S) -> StageService<T> {
        StageService { stage: self.0.clone(), next: BoxCloneSyncService::new(inner) }
    }
}

#[derive(Clone)]
pub struct StageService<T> {
    stage: T,
    next: Next,
}

impl<T: PipelineStage> Service<Request<Body>> for StageService<T> {
    type Response = Response<Body>;
    type Error = Rejection;
    type Future = StageFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> StageFuture {
        // The service that was made ready goes with the request; a fresh clone stays.
        let fresh = self.next.clone();
        let next = std::mem::replace(&mut self.next, fresh);
        self.stage.call(req, next)
    }
}
