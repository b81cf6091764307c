# The portal image for web, workers and beat. For CUDA inference workers build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# The case viewer's bundle (Cornerstone3D + static/viewer/src) from package.json and the lock file.
FROM node:22-slim AS viewer
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY static/viewer ./static/viewer
RUN npx --no-install vite build --config static/viewer/vite.config.js \
 && npx --no-install vite build --config static/viewer/vite.config.js --mode early
# The prebuilt OHIF viewer (@ohif/app from the npm registry, sha512-pinned in scripts/ohif-app.lock) for /ohif/.
COPY scripts/build_ohif.sh scripts/ohif-app.lock ./scripts/
RUN bash scripts/build_ohif.sh

FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -r requirements.txt
COPY . .
COPY --from=viewer /build/static/viewer/dist ./static/viewer/dist
COPY --from=viewer /build/vendor/ohif ./vendor/ohif
RUN useradd --create-home portal && mkdir -p /data/media && chown portal /data/media
USER portal
EXPOSE 8000
