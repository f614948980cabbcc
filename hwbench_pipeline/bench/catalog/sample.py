"""The fixed sample of architectures CI sweeps: each category, well-known and less common architectures alike."""

CI_SAMPLE: dict[str, str] = {
    "roberta": "text encoder", "distilbert": "text encoder", "electra": "text encoder",
    "deberta-v2": "text encoder",
    "llama": "text decoder", "gpt2": "text decoder", "qwen3": "text decoder", "mixtral": "text decoder",
    "mamba": "text decoder", "gemma2": "text decoder",
    "t5": "encoder-decoder", "bart": "encoder-decoder", "pegasus": "encoder-decoder",
    "vit": "vision", "convnext": "vision", "swin": "vision", "resnet": "vision", "dinov2": "vision",
    "segformer": "vision",
    "wav2vec2": "audio", "hubert": "audio", "encodec": "audio",
    "llava": "vision-language", "paligemma": "vision-language", "idefics3": "vision-language",
    "clip": "multimodal", "siglip": "multimodal",
    "videomae": "video", "vivit": "video",
    "whisper": "speech-text", "speech_to_text": "speech-text",
    "patchtst": "time series", "informer": "time series",
}
#: the part of the sample that CI also exports to ONNX Runtime and OpenVINO (exports take seconds each)
CI_EXPORT_SAMPLE: tuple[str, ...] = ("roberta", "llama", "t5", "vit", "convnext", "wav2vec2", "clip", "whisper",
                                     "videomae", "patchtst", "llava", "mixtral")
