"""Generated Python stubs for the mvp.v1 protobuf contracts (see proto/mvp/v1). Do not edit."""
