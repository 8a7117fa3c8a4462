#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_router_fuzz::native_completion(data));
