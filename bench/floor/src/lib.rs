//! Pass-through proxy-wasm filter: one header read, one comparison.
//!
//! Built with `--features map`, it reads the whole header map instead and
//! also refuses a repeated key header: the price of duplicate detection,
//! since Envoy's single-header read returns only the first value.
//!
//! With the plugin configuration `"abi"` (any build), it is the ABI floor:
//! the host work the contract's defaults make unavoidable and nothing else.
//! Raw host calls, one whole-map read parsed in place (no allocation per
//! header), the key compared to a constant, the key header removed, the
//! client header added, one counter incremented.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::ptr::null_mut;

const HEADER: &str = "nected-api-key";
const KEY: &[u8] = b"nk_bench_9fK2mQ7xLp4Rt8Vw3Zb6Nc1Yd5Hs0Ja";
const CLIENT_HEADER: &str = "x-nected-client";
const CLIENT: &str = "billing";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { abi: None }) });
}}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
}

struct Root {
    /// The counter id, in ABI-floor mode.
    abi: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        if config.trim_ascii() == b"\"abi\"" {
            let name = "floor.allowed";
            let mut id = 0;
            // SAFETY: pointer and length of a live string; writes one u32.
            let status = unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
            self.abi = (status == 0).then_some(id);
        }
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.abi {
            Some(counter) => Box::new(Abi { counter }),
            None => Box::new(Floor),
        })
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

struct Abi {
    counter: u32,
}

impl Context for Abi {}

impl HttpContext for Abi {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: out-pointers to locals.
        let status = unsafe { proxy_get_header_map_pairs(0, &mut data, &mut size) };
        let buf = if status == 0 && !data.is_null() {
            // SAFETY: the host allocated `size` bytes through our allocator
            // and hands them over.
            unsafe { Vec::from_raw_parts(data, size, size) }
        } else {
            Vec::new()
        };
        let mut keys = pairs(&buf).filter(|(name, _)| *name == HEADER.as_bytes());
        let ok = matches!((keys.next(), keys.next()), (Some((_, value)), None) if value == KEY);
        if !ok {
            self.send_http_response(401, vec![], None);
            return Action::Pause;
        }
        // SAFETY: pointers and lengths of live strings; plain values.
        unsafe {
            proxy_remove_header_map_value(0, HEADER.as_ptr(), HEADER.len());
            proxy_add_header_map_value(
                0,
                CLIENT_HEADER.as_ptr(),
                CLIENT_HEADER.len(),
                CLIENT.as_ptr(),
                CLIENT.len(),
            );
            proxy_increment_metric(self.counter, 1);
        }
        Action::Continue
    }
}

/// The `(name, value)` pairs of a serialized header map, borrowed from it.
fn pairs(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let u32_at = move |at: usize| -> Option<usize> {
        let bytes = buf.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    };
    let count = u32_at(0).unwrap_or(0);
    let mut data = count.checked_mul(8).and_then(|n| n.checked_add(4));
    (0..count).map_while(move |i| {
        let lengths = i.checked_mul(8)?.checked_add(4)?;
        let name_len = u32_at(lengths)?;
        let value_len = u32_at(lengths.checked_add(4)?)?;
        let name_start = data?;
        let name_end = name_start.checked_add(name_len)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let name = buf.get(name_start..name_end)?;
        let value = buf.get(value_start..value_end)?;
        data = value_end.checked_add(1);
        Some((name, value))
    })
}
