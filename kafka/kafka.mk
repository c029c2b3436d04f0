# Apache Kafka broker jars from Maven Central (included by the top-level Makefile).
# `make kafka-jars` fills $(KAFKA_LIB) once; pipeline/stream/broker.py runs the same step on first use.
KAFKA_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
KAFKA_LIB ?= $(or $(MDR_KAFKA_LIB),.cache/kafka/lib)
KAFKA_DEP_PLUGIN := org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies

.PHONY: kafka-jars kafka-jars-clean

kafka-jars:
	@if ls $(KAFKA_LIB)/kafka_2.13-*.jar >/dev/null 2>&1; then \
	  echo "kafka jars: $(KAFKA_LIB) (present)"; \
	else \
	  command -v mvn >/dev/null || { echo "mvn not found: apt-get install maven" >&2; exit 1; }; \
	  rm -rf $(KAFKA_LIB).part && \
	  mvn -B -q -f $(KAFKA_MK_DIR)/pom.xml $(KAFKA_DEP_PLUGIN) -DincludeScope=runtime \
	    -DoutputDirectory=$(abspath $(KAFKA_LIB)).part && \
	  mv $(KAFKA_LIB).part $(KAFKA_LIB) && \
	  echo "kafka jars: $(KAFKA_LIB) ($$(ls $(KAFKA_LIB) | wc -l) jars)"; \
	fi
	@n=$$(ls $(KAFKA_LIB) | grep -c '^slf4j-api-'); m=$$(ls $(KAFKA_LIB) | grep -c '^slf4j-api-1\.7\.'); \
	  [ "$$n" = 1 ] && [ "$$m" = 1 ] || { echo "need exactly one slf4j-api 1.7.x jar in $(KAFKA_LIB)" >&2; exit 1; }

kafka-jars-clean:
	rm -rf $(KAFKA_LIB) $(KAFKA_LIB).part
