# The flows, the deployment scripts and the worker supervisor (stack/) on the official Prefect
# image, at the version in uv.lock.
FROM prefecthq/prefect:3.8.8-python3.11

WORKDIR /opt/flows

# The locked dependency set (with hashes), so the server gets the same fastapi and SQLAlchemy
# pins as the tests used.
COPY pyproject.toml uv.lock ./
RUN python -m pip install --no-cache-dir "uv==0.13.9" \
 && uv export --frozen --no-dev --no-emit-project --output-file /tmp/requirements.txt \
 && python -m pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Dockerfile and prefect-docker.yaml too: the compose deploy-docker job builds the flow image
# from this copy of the repository.
COPY Dockerfile prefect.yaml prefect-docker.yaml prefect.toml ./
COPY flows/ flows/
COPY deployments/ deployments/
COPY stack/ stack/

# The code stays root's, read-only to the user that runs it. Its files then also match a clone
# checked out by root, so the deploy-docker job's build of this copy finds every layer cached.
RUN useradd --create-home --uid 10001 prefect
USER prefect
ENV PREFECT_HOME=/home/prefect/.prefect \
    DO_NOT_TRACK=1
