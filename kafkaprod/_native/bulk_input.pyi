# bulk_input has no Python-level API: its C functions read the inputs of KafkaProducer.send_batch() (see bulk_input.pxd).
