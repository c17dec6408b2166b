# The flows, the deployment scripts and the worker supervisor (stack/) on the official Prefect
# image, at the version in uv.lock.
#
# Every instruction is a layer, and on a storage driver without copy-on-write (vfs) a full copy
# of the image: the dependencies, the user and its environment come first, in layers that a
# build with unchanged dependencies takes from the cache; a code change rebuilds only the last.
FROM prefecthq/prefect:3.8.8-python3.11

WORKDIR /opt/flows

# The locked dependency set (with hashes), so the server gets the same fastapi and SQLAlchemy
# pins as the tests used; and the user the image runs as.
COPY pyproject.toml uv.lock ./
RUN python -m pip install --no-cache-dir "uv==0.13.9" \
 && uv export --frozen --no-default-groups --no-emit-project --output-file /tmp/requirements.txt \
 && python -m pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && useradd --create-home --uid 10001 prefect

# The server writes the UI's built files, with this stack's API address in them, at start: into
# the user's home, since the installed package is root's and read-only (the UI is not served
# otherwise).
ENV PREFECT_HOME=/home/prefect/.prefect \
    PREFECT_SERVER_UI_STATIC_DIRECTORY=/home/prefect/.prefect/ui \
    DO_NOT_TRACK=1
USER prefect

# The repository, as .dockerignore lists it, in one layer. Dockerfile and .dockerignore come
# too: the compose deploy-docker job builds the flow image from this copy. COPY writes as root
# whatever USER says: the code stays root's and read-only to the user that runs it, so the copy
# matches a clone checked out by root and that build finds every layer cached.
COPY . .
