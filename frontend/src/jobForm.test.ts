import { describe, expect, it } from 'vitest';
import { checkServe, checkTrain, fieldOfRefusal, SERVE_DEFAULTS, TRAIN_DEFAULTS } from './jobForm.ts';

describe('the training form', () => {
  it('sends the CLI defaults, the model named after its architecture', () => {
    const { spec, errors } = checkTrain(TRAIN_DEFAULTS);
    expect(errors).toEqual({});
    expect(spec).toEqual({
      kind: 'train', arch: 'cnn', name: 'cnn', dataset: 'fashion-mnist', epochs: 5, batch: 128, lr: null, limit: null, seed: 0, workers: 1,
    });
  });

  it('says what is wrong beside each field, with the limits the cluster checks', () => {
    const { spec, errors } = checkTrain({
      ...TRAIN_DEFAULTS, arch: 'gpt', name: 'a b', epochs: '0', batch: '65537', lr: '11', limit: '0', seed: '-1',
    });
    expect(spec).toBeUndefined();
    expect(errors).toEqual({
      arch: 'choose one of mlp, cnn, resnet',
      name: "a model name is 1 to 64 letters, digits, '-' or '_'",
      epochs: '--epochs must be between 1 and 10000, not 0',
      batch: '--batch must be between 1 and 65536, not 65537',
      lr: '--lr must be in (0, 10], not 11',
      limit: '--limit must be between 1 and 2^53, not 0',
      seed: '--seed must be between 0 and 9007199254740991, not -1',
    });
    expect(checkTrain({ ...TRAIN_DEFAULTS, epochs: '2.5' }).errors.epochs).toBe('--epochs must be between 1 and 10000, not 2.5');
    expect(checkTrain({ ...TRAIN_DEFAULTS, dataset: '' }).errors.dataset).toBe('give the dataset');
    expect(checkTrain({ ...TRAIN_DEFAULTS, workers: '65' }).errors.workers).toBe('--workers must be between 1 and 64, not 65');
    expect(checkTrain({ ...TRAIN_DEFAULTS, batch: '2', workers: '3' }).errors.workers).toBe(
      '--workers 3 is more than the batch of 2: each worker needs a share of every step',
    );
    expect(checkTrain({ ...TRAIN_DEFAULTS, workers: '3' }).spec).toMatchObject({ workers: 3 });
  });

  it('sends the optional numbers when given', () => {
    const { spec } = checkTrain({ ...TRAIN_DEFAULTS, arch: 'mlp', name: 'small', lr: '0.01', limit: '3000', seed: '7' });
    expect(spec).toMatchObject({ arch: 'mlp', name: 'small', lr: 0.01, limit: 3000, seed: 7 });
  });
});

describe('the inference form', () => {
  it('needs a model and a batch size, as `idunno serve` does', () => {
    const { spec, errors } = checkServe(SERVE_DEFAULTS);
    expect(spec).toBeUndefined();
    expect(errors).toEqual({ model: 'give the model', batch: 'the batch size is required' });
  });

  it('sends one pass of the newest version by default, or a continuous job', () => {
    expect(checkServe({ ...SERVE_DEFAULTS, model: 'cnn', batch: '16' }).spec).toEqual({
      kind: 'serve', model: 'cnn', model_version: null, dataset: '', split: 'test', batch: 16, passes: 1, weight: 1,
    });
    const continuous = checkServe({ ...SERVE_DEFAULTS, model: 'cnn', batch: '16', version: '2', continuous: true, passes: '' });
    expect(continuous.spec).toMatchObject({ model_version: 2, passes: null });
  });

  it('checks the batch size, passes and weight against the cluster limits', () => {
    const { errors } = checkServe({ ...SERVE_DEFAULTS, model: 'cnn', batch: '4097', passes: '0', weight: '1001', split: '' });
    expect(errors).toEqual({
      batch: 'the batch size must be between 1 and 4096, not 4097',
      passes: '--passes must be between 1 and 1000000, not 0',
      weight: '--weight must be between 1 and 1000, not 1001',
      split: 'give the split (test, train, all, …)',
    });
  });
});

describe('a refusal of the cluster', () => {
  it('is put beside the field it names', () => {
    expect(fieldOfRefusal('serve', 'unknown_model', 'unknown model "nope" (see `idunno models`)')).toBe('model');
    expect(fieldOfRefusal('train', 'unknown_model', 'unknown model "gpt": the architectures that train are mlp, cnn, resnet')).toBe('arch');
    expect(fieldOfRefusal('serve', 'unknown_dataset', 'no dataset "x"')).toBe('dataset');
    expect(fieldOfRefusal('serve', 'bad_argument', 'dataset "fm" has no split "nope" (it has ["test"])')).toBe('split');
    expect(fieldOfRefusal('train', 'bad_argument', '--epochs must be between 1 and 10000, not 0')).toBe('epochs');
    expect(fieldOfRefusal('serve', 'bad_argument', 'the batch size must be between 1 and 4096, not 0')).toBe('batch');
    expect(fieldOfRefusal('serve', 'bad_argument', 'model cnn takes 3x32x32 inputs but dataset fm has 1x28x28')).toBe('dataset');
    expect(fieldOfRefusal('train', 'bad_argument', 'dataset "pics" has no labelled train split, so it cannot be trained on (it can be served)')).toBe('dataset');
    expect(fieldOfRefusal('train', null, 'the cluster did not answer')).toBe('form');
  });
});
