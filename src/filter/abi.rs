//! The few proxy-wasm host calls the filter makes, declared directly.
//!
//! The SDK's wrappers panic on any status they do not expect, and a panic
//! kills the VM. These return what the host said and let the caller decide;
//! header maps are parsed in place, without a copy per header.

#![allow(clashing_extern_declarations)]

use std::ptr::{null, null_mut};

const OK: u32 = 0;
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_REQUEST_TRAILERS: u32 = 1;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed byte slice of exactly `size`).
fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != OK {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the host filled `data` with `size` bytes it allocated through
    // our allocator, and hands the allocation over to us.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log(level: u32, message: &str) {
    log_bytes(level, message.as_bytes());
}

/// A log line that is UTF-8 by construction (see `Decision::write_log_line`).
pub fn log_bytes(level: u32, message: &[u8]) {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Host wall clock in Unix nanoseconds, if the host can tell.
pub fn now() -> Option<i128> {
    let mut t = 0u64;
    // SAFETY: writes one u64.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    (status == OK && t > 0).then_some(i128::from(t))
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to locals.
    let status = unsafe {
        proxy_get_buffer_bytes(
            BUFFER_PLUGIN_CONFIGURATION,
            0,
            usize::MAX,
            &mut data,
            &mut size,
        )
    };
    owned(status, data, size)
}

/// The serialized request header map (see `wire::pairs`).
pub fn request_headers() -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to locals.
    let status = unsafe { proxy_get_header_map_pairs(MAP_REQUEST_HEADERS, &mut data, &mut size) };
    owned(status, data, size).unwrap_or_default()
}

/// The serialized request trailer map.
pub fn request_trailers() -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to locals.
    let status = unsafe { proxy_get_header_map_pairs(MAP_REQUEST_TRAILERS, &mut data, &mut size) };
    owned(status, data, size).unwrap_or_default()
}

/// One request header's value (the first, for a repeated name).
pub fn request_header(name: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointer and length of a live slice; out-pointers to locals.
    let status = unsafe {
        proxy_get_header_map_value(
            MAP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    owned(status, data, size)
}

pub fn remove_request_header(name: &[u8]) {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_remove_header_map_value(MAP_REQUEST_HEADERS, name.as_ptr(), name.len()) };
}

pub fn remove_request_trailer(name: &[u8]) {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_remove_header_map_value(MAP_REQUEST_TRAILERS, name.as_ptr(), name.len()) };
}

pub fn replace_request_header(name: &str, value: &str) {
    replace_request_header_bytes(name.as_bytes(), value.as_bytes());
}

pub fn replace_request_header_bytes(name: &[u8], value: &[u8]) {
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_replace_header_map_value(
            MAP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
}

/// Adds a header the request does not have (cheaper than a replace, which
/// first looks for it).
pub fn add_request_header(name: &str, value: &str) {
    // SAFETY: pointers and lengths of live strings.
    unsafe {
        proxy_add_header_map_value(
            MAP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
}

/// A property such as `connection.tls_version` (path parts joined by NUL).
pub fn get_property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: pointer and length of a live slice; out-pointers to locals.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    owned(status, data, size)
}

/// Sets a property; Envoy keeps it as filter state `wasm.<path>`.
pub fn set_property(path: &str, value: &[u8]) {
    // SAFETY: pointers and lengths of live slices.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
}

pub fn define_counter(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: pointer and length of a live string; writes one u32.
    let status = unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment(id: u32) {
    // SAFETY: plain values.
    unsafe { proxy_increment_metric(id, 1) };
}

/// Sends a local reply; `headers` from `wire::serialize_map`. A gRPC request
/// gets the gRPC form (HTTP 200, `grpc-status: grpc_status`, the body as
/// `grpc-message`); without an explicit status Envoy would derive one from
/// the HTTP status (400 → 13 INTERNAL). Returns whether the host accepted it.
pub fn send_local_response(status: u32, headers: &[u8], body: &str, grpc_status: u32) -> bool {
    // SAFETY: pointers and lengths of live slices; no details string.
    let status = unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            i32::try_from(grpc_status).unwrap_or(-1),
        )
    };
    status == OK
}

/// Closes the request stream (the fallback when a local reply is refused:
/// the request must not go on, and must not hang).
pub fn close_request_stream() {
    // SAFETY: a plain value (stream type 0: HTTP request).
    unsafe { proxy_close_stream(0) };
}
