"""Browser targets: onnxruntime-web in a headless browser, driven through the measuring page (docs/browser.md)."""
