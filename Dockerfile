# The Airflow image docker-compose.yaml runs: Airflow's official image, this project's pinned
# requirements, and the project installed as an Airflow provider (its entry point is what makes the
# zoho_books and whatsapp connection types and forms appear in the UI).
#
#   docker compose build            (or: docker build -t zoho-books-whatsapp-airflow:3.3.2 .)
#
# Only what production runs goes in: the DAGs, the plugin package and the WhatsApp template
# configuration, and the reminder policy and organizations (include/config). Not the sandbox (include/sandbox serves its credentials over HTTP), the demo and
# test tooling (include/demo.py, include/local_airflow.py), bench/, tests/, docs/ or scripts/:
# .dockerignore keeps them out of the build context as well, and tests/deploy/test_compose_file.py
# fails if a COPY line names them.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

# Requirements first, so this layer is rebuilt only when they change. Pinning apache-airflow to the
# image's version stops pip from moving Airflow itself (Airflow's documented way to extend the image).
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

# The code is copied so the image works on its own, and installed editable from /opt/airflow: the
# installed package then points at /opt/airflow/plugins, which docker-compose.yaml mounts from the
# checkout, so what runs is always the mounted code (a regular install would shadow it).
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include/templates /opt/airflow/include/templates
COPY --chown=airflow:0 include/config /opt/airflow/include/config
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
