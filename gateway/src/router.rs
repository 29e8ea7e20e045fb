// STUB until the router lands
use crate::model::Route;
#[derive(Debug)]
pub struct Router {
    n: usize,
}
pub struct RouteRequest<'a> {
    pub method: &'a http::Method,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: usize,
    pub matched_path_len: usize,
}
#[derive(Debug, thiserror::Error)]
#[error("route `{route}`: {field}: {message}")]
pub struct RouterError {
    pub route: String,
    pub field: String,
    pub message: String,
}
impl Router {
    pub fn build(routes: &[Route]) -> Result<Router, RouterError> {
        Ok(Router { n: routes.len() })
    }
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<RouteMatch> {
        (self.n > 0).then_some(RouteMatch {
            route: 0,
            matched_path_len: req.path.len().min(0),
        })
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}
