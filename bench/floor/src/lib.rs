//! Pass-through proxy-wasm filter: one header read, one comparison.
//!
//! Built with `--features map`, it reads the whole header map instead and
//! also refuses a repeated key header: the price of duplicate detection,
//! since Envoy's single-header read returns only the first value.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

const HEADER: &str = "nected-api-key";
const KEY: &[u8] = b"bench_key_0123456789abcdefghijklmnopqrstuvwxyz";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    #[cfg(not(feature = "map"))]
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header_bytes(HEADER).as_deref() == Some(KEY) {
            return Action::Continue;
        }
        self.send_http_response(401, vec![], None);
        Action::Pause
    }

    #[cfg(feature = "map")]
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        let mut keys = headers.iter().filter(|(name, _)| name == HEADER);
        if let (Some((_, value)), None) = (keys.next(), keys.next()) {
            if value == KEY {
                return Action::Continue;
            }
        }
        self.send_http_response(401, vec![], None);
        Action::Pause
    }
}
