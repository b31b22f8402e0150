# Triton for the production stack: the NGC image (onnxruntime + python backends, CUDA) plus the Python
# packages the python-backend models import in their 1/model.py (face_mtcnn: torch; ocr_ppocr: onnxruntime,
# rapidocr-onnxruntime, opencv-headless; caption_blip: transformers). numpy < 2: see triton_repo/*/README.md.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
RUN pip install --no-cache-dir "numpy<2" "torch==2.5.1" "onnxruntime-gpu==1.19.2" "rapidocr-onnxruntime==1.4.4" \
        "opencv-python-headless==4.10.0.84" "pyclipper>=1.3,<2" "shapely>=2.0,<3" "pyyaml>=6" "six>=1.15" \
        "transformers==5.23.0"
