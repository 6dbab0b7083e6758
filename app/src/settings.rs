//! Settings remembered across visits, in the origin's local storage.

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// A remembered setting.
pub fn load_setting(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

/// Remembers a setting across visits.
pub fn save_setting(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}
