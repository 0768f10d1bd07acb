-- One database per Shop service, all owned by the application role (POSTGRES_USER).
-- Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d).
-- The Kubernetes manifests carry the same statements (deploy/k8s/postgres.yaml).
CREATE DATABASE "order";
CREATE DATABASE payment;
CREATE DATABASE delivery;
CREATE DATABASE notification;
CREATE DATABASE logging;
CREATE DATABASE mobile;
CREATE DATABASE email;
